"""export-bundle of the shipped smear model by name: the bundle MONAI runs segments a real BCCD
smear exactly as ``infer blood-smear`` does (the model's real weights, red-cell rescaling included)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from bundle_helpers import SAMPLE, read_label_map, run_bundle

from medseg_dfl.bundle import export_bundle
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.inference import InferenceOptions, predict_folder
from medseg_dfl.engine.rescale import recorded_model_scale
from medseg_dfl.pretrained import resolve_model

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")
REAL_SMEAR = SAMPLE / "blood_smear_bccd" / "images" / "BloodImage_00001.png"


def test_the_shipped_model_exports_by_name_and_its_bundle_matches_infer(tmp_path):
    bundle = export_bundle("blood-smear", tmp_path / "bundle")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    payload = load_checkpoint(resolve_model("blood-smear"))
    recorded = recorded_model_scale(payload["scale"], payload["class_names"], 2)
    assert meta["medseg_dfl"]["scale"]["cell_diameter_px"] == pytest.approx(recorded.cell_diameter_px)
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(REAL_SMEAR, images / REAL_SMEAR.name)
    predict_folder(resolve_model("blood-smear"), images, tmp_path / "infer", InferenceOptions(device="cpu"))
    run_bundle(bundle / "configs" / "inference.json", bundle_root=str(bundle), dataset_dir=str(images),
               output_dir=str(tmp_path / "masks"), device="$torch.device('cpu')")  # fmt: skip
    ours, theirs = read_label_map(tmp_path / "infer" / REAL_SMEAR.name), read_label_map(tmp_path / "masks" / REAL_SMEAR.name)
    assert ours.shape == theirs.shape
    print("shipped model: bundle vs infer pixel agreement", float((ours == theirs).mean()))
    assert float((ours == theirs).mean()) >= 0.9999
    assert set(np.unique(ours)) >= {0, 1, 2}  # background, red cells and the white cell found


def test_an_unknown_name_is_refused_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory, checkpoint or shipped model not found: no-such-model"):
        export_bundle("no-such-model", tmp_path / "bundle")


def test_a_checkpoint_option_beside_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--checkpoint last.pt applies to a run directory, and blood-smear is a checkpoint"):
        export_bundle("blood-smear", tmp_path / "bundle", checkpoint="last.pt")
    assert not (tmp_path / "bundle").exists()
