"""``infer --keep-largest``: only the largest connected component of the chosen classes survives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg_dfl.engine.inference import InferenceOptions, load_predictor, predict_folder
from tests.engine.test_inference import ct_volume, make_checkpoint, volume_config, write_nifti

FULL = np.ones((3, 3, 3))  # 26-connectivity, MONAI's default for KeepLargestConnectedComponent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("m") / "m.pt", volume_config())


def test_only_the_largest_component_of_the_chosen_class_is_kept(tmp_path, checkpoint):
    # a random network on noise: both classes come out in many pieces
    src = write_nifti(tmp_path / "a.nii.gz", np.random.default_rng(0).integers(-1000, 1000, (24, 20, 12)).astype(np.int16))
    plain = load_predictor([checkpoint], InferenceOptions(device="cpu")).predict_file(src).mask
    kept = load_predictor([checkpoint], InferenceOptions(device="cpu", keep_largest=("organ",))).predict_file(src).mask
    pieces, n = ndimage.label(plain == 1, structure=FULL)
    assert n > 1, "the test needs a fragmented class"
    largest = np.bincount(pieces.ravel())[1:].argmax() + 1
    np.testing.assert_array_equal(kept == 1, pieces == largest)
    np.testing.assert_array_equal(kept[plain == 2], 2)  # the other class untouched
    assert np.all(kept[(plain == 1) & (pieces != largest)] == 0)  # dropped pieces become background


def test_all_and_unknown_names(tmp_path, checkpoint):
    predictor = load_predictor([checkpoint], InferenceOptions(device="cpu", keep_largest=("all",)))
    assert predictor.keep_largest == (1, 2)
    mask = predictor.predict_file(write_nifti(tmp_path / "a.nii.gz", ct_volume())).mask
    for cls in (1, 2):
        assert ndimage.label(mask == cls, structure=FULL)[1] <= 1
    with pytest.raises(ValueError, match="keep-largest: tumour not among the model's foreground classes"):
        load_predictor([checkpoint], InferenceOptions(device="cpu", keep_largest=("tumour",)))


def test_unknown_class_leaves_no_output_folder(tmp_path, checkpoint):
    src = write_nifti(tmp_path / "a.nii.gz", ct_volume())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="keep-largest: tumour"):
        predict_folder(checkpoint, src, out, InferenceOptions(device="cpu", keep_largest=("tumour",)))
    assert not out.exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays
    with pytest.raises(ValueError, match="keep-largest: tumour"):
        predict_folder(checkpoint, src, tmp_path / "kept", InferenceOptions(device="cpu", keep_largest=("tumour",)))
    assert (tmp_path / "kept").is_dir()
