"""TTA (mirroring) and checkpoint ensembles: exact averages, ensemble of one, folder resolution."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg_dfl.engine.ensemble import AveragedProbabilities, flip_combinations, resolve_checkpoints
from medseg_dfl.engine.inference import InferenceOptions, Predictor, load_predictor, predict_folder
from tests.engine.test_inference import ct_volume, make_checkpoint, volume_config, write_nifti


def _conv_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # not flip-equivariant: a 3x3x3 kernel with random weights
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3, padding=1))


def test_flip_combinations_are_every_subset_of_the_spatial_axes():
    assert flip_combinations(2) == [(), (2,), (3,), (2, 3)]
    assert len(flip_combinations(3)) == 8 and (2, 3, 4) in flip_combinations(3)


def test_tta_equals_mean_of_manually_flipped_predictions():
    net = _conv_net().eval()
    x = torch.randn(2, 1, 6, 5, 4)
    with torch.no_grad():
        manual = torch.stack([
            torch.flip(torch.softmax(net(torch.flip(x, axes)), 1), axes) for axes in flip_combinations(3)
        ]).mean(0)  # fmt: skip
        tta = torch.softmax(AveragedProbabilities([net], flip_combinations(3))(x), 1)
        plain = torch.softmax(net(x), 1)
    torch.testing.assert_close(tta, manual, atol=1e-6, rtol=1e-5)
    assert (tta - plain).abs().max() > 1e-3  # the flips did change something for this network


def test_tta_of_a_flip_equivariant_network_is_the_plain_prediction():
    net = torch.nn.Conv3d(1, 3, 1).eval()  # pointwise: flipping commutes with it
    x = torch.randn(1, 1, 5, 6, 7)
    with torch.no_grad():
        tta = torch.softmax(AveragedProbabilities([net], flip_combinations(3))(x), 1)
        torch.testing.assert_close(tta, torch.softmax(net(x), 1), atol=1e-6, rtol=1e-5)


def test_two_model_ensemble_is_the_mean_of_their_probabilities():
    a, b = _conv_net(1).eval(), _conv_net(2).eval()
    x = torch.randn(1, 1, 6, 6, 6)
    with torch.no_grad():
        mean = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2
        torch.testing.assert_close(torch.softmax(AveragedProbabilities([a, b])(x), 1), mean, atol=1e-6, rtol=1e-5)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folds")
    for fold in (0, 1):
        (root / f"fold{fold}").mkdir()
        torch.manual_seed(fold)
        make_checkpoint(root / f"fold{fold}" / "best.pt", volume_config())
    return root


def test_ensemble_of_one_equals_the_single_model(tmp_path, two_runs):
    src = write_nifti(tmp_path / "a.nii.gz", ct_volume())
    ckpt = two_runs / "fold0" / "best.pt"
    single = Predictor.from_checkpoint(ckpt)
    one = dataclasses.replace(single, network=AveragedProbabilities([single.network]))
    expected = single.predict_file(src, probabilities=True)
    got = one.predict_file(src, probabilities=True)
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-5)


def test_folder_of_fold_runs_is_an_ensemble_and_differs_from_each_member(tmp_path, two_runs):
    src = write_nifti(tmp_path / "a.nii.gz", ct_volume())
    assert resolve_checkpoints([two_runs]) == [two_runs / "fold0" / "best.pt", two_runs / "fold1" / "best.pt"]
    ensemble = load_predictor(resolve_checkpoints([two_runs]), InferenceOptions(device="cpu"))
    members = [Predictor.from_checkpoint(two_runs / f"fold{k}" / "best.pt") for k in (0, 1)]
    probs = [m.predict_file(src, probabilities=True).probabilities for m in members]
    got = ensemble.predict_file(src, probabilities=True).probabilities
    # a single window: the ensemble's probabilities are the members' mean
    np.testing.assert_allclose(got, (probs[0] + probs[1]) / 2, atol=1e-4)
    out = predict_folder(two_runs, src, tmp_path / "out", InferenceOptions(device="cpu", tta=True))
    assert out.written == [src]


def test_missing_checkpoint_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no best.pt"):
        resolve_checkpoints([tmp_path])
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_checkpoints([tmp_path / "nope.pt"])


def test_flip_combinations_of_chosen_axes_only():
    assert flip_combinations(3, [0]) == [(), (2,)]
    assert flip_combinations(3, [2, 0]) == [(), (2,), (4,), (2, 4)]
    assert flip_combinations(3, []) == [()]


@pytest.mark.parametrize(("augment", "expected"), [
    ({}, 8),  # every axis mirrored in training: 2**3 flips
    ({"flip_axes": [0]}, 2),  # only axis 0: identity and one flip
    ({"flip": False}, 1),  # no flips in training: tta mirrors nothing
])  # fmt: skip
def test_tta_mirrors_only_the_axes_training_mirrored(tmp_path, augment, expected):
    ckpt = make_checkpoint(tmp_path / "m.pt", volume_config(augment=augment))
    predictor = load_predictor([ckpt], InferenceOptions(device="cpu", tta=True))
    flips = predictor.network.flips if isinstance(predictor.network, AveragedProbabilities) else [()]
    assert len(flips) == expected
    if augment.get("flip_axes") == [0]:
        assert flips == [(), (2,)]
