"""Mirroring TTA by default where it was measured to help: `count` (every smear model) and `infer`
of single-cell (white-cell) models; `infer` of smear and volume models stays without it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

import medseg_dfl.engine.counting as counting
from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES
from medseg_dfl.engine.counting import CountOptions, SmearCounter
from medseg_dfl.engine.ensemble import AveragedProbabilities
from medseg_dfl.engine.inference import InferenceOptions, load_predictor, wants_tta
from medseg_dfl.networks import build_network

FOUR_FLIPS = [(), (2,), (3,), (2, 3)]  # every flip of the two image axes (B, C, H, W)


def test_count_mirrors_by_default_and_not_when_told(tmp_path, write_smear_checkpoint):
    checkpoint = write_smear_checkpoint(tmp_path / "best.pt")  # its config flips both axes (the default)
    counter = SmearCounter.from_checkpoint(checkpoint, "cpu")
    assert CountOptions().tta is True
    assert isinstance(counter.predictor.network, AveragedProbabilities)
    assert counter.predictor.network.flips == FOUR_FLIPS
    plain = SmearCounter.from_checkpoint(checkpoint, "cpu", tta=False)
    assert not isinstance(plain.predictor.network, AveragedProbabilities)
    # What the counter's network returns is the mean of the four mirrored softmaxes.
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        mirrored = [torch.softmax(plain.predictor.network(x.flip(a) if a else x), 1) for a in FOUR_FLIPS]
        mean = torch.stack([m.flip(a) if a else m for m, a in zip(mirrored, FOUR_FLIPS, strict=True)]).mean(0)
        got = torch.softmax(counter.predictor.network(x), 1)
    torch.testing.assert_close(got, mean, atol=1e-5, rtol=1e-4)


def test_count_of_a_model_trained_without_flips_runs_the_bare_network(tmp_path, write_smear_checkpoint):
    cfg = config_from_dict({
        "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3, "class_names": list(SMEAR_CLASSES)},
        "transforms": {"patch_size": [32, 32], "augment": {"flip": False}},
        "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    })  # fmt: skip
    checkpoint = write_smear_checkpoint(tmp_path / "best.pt", config=config_to_dict(cfg),
                                        model_state=build_network(cfg).state_dict())  # fmt: skip
    counter = SmearCounter.from_checkpoint(checkpoint, "cpu")
    assert not isinstance(counter.predictor.network, AveragedProbabilities)  # nothing to average


def test_infer_mirrors_white_cell_models_by_default_only(tmp_path, write_smear_checkpoint, write_wbc_checkpoint):
    cfg = config_from_dict({
        "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3,
                 "class_names": ["background", "cytoplasm", "nucleus"]},
        "transforms": {"patch_size": [64, 64], "intensity": "rgb_0_1"},
        "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    })  # fmt: skip
    wbc = write_wbc_checkpoint(tmp_path / "wbc.pt", {"object_diameter_px": 80.0, "core_class": 2},
                               build_network(cfg).state_dict())  # fmt: skip
    smear = write_smear_checkpoint(tmp_path / "smear.pt")
    for checkpoint, default in ((wbc, True), (smear, False)):
        predictor = load_predictor([checkpoint], InferenceOptions(device="cpu"))
        assert wants_tta(None, predictor) is default
        assert isinstance(predictor.network, AveragedProbabilities) is default
        for given in (True, False):
            assert wants_tta(given, predictor) is given  # --tta / --no-tta win
    told = load_predictor([wbc], InferenceOptions(device="cpu", tta=False))
    assert not isinstance(told.network, AveragedProbabilities)


def test_count_cli_no_tta_flag(tmp_path, write_smear_checkpoint, monkeypatch):
    seen = []
    real = counting.SmearCounter.from_checkpoint.__func__

    def spy(cls, checkpoint, device="auto", overlap=None, tta=True):
        seen.append(tta)
        return real(cls, checkpoint, device, overlap, tta)

    monkeypatch.setattr(counting.SmearCounter, "from_checkpoint", classmethod(spy))
    checkpoint = write_smear_checkpoint(tmp_path / "best.pt")
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(folder / "a.png")
    for extra, want in (([], True), (["--no-tta"], False)):
        out = tmp_path / f"out{len(seen)}"
        result = CliRunner().invoke(app, ["count", str(checkpoint), str(folder), str(out), "--cell-diameter", "25", *extra])
        assert result.exit_code == 0, result.output
        assert seen[-1] is want
