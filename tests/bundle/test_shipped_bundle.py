"""The shipped bundle (bundles/blood_smear_dfl): metadata fields, one training epoch and inference
through MONAI's bundle runner, and its inference config equal to what export-bundle writes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from bundle_helpers import SAMPLE, SHIPPED, check_metadata, read_label_map, run_bundle, validation_images
from monai.bundle import verify_net_in_out

# MONAI warns that bundle configs can run code; these are our own configs, parsed on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def test_shipped_metadata_has_the_spec_fields():
    meta = json.loads((SHIPPED / "configs" / "metadata.json").read_text())
    check_metadata(meta, ["background", "rbc", "wbc", "platelet"], in_channels=3, spatial_dims=2)
    assert meta["medseg_dfl"]["loss"]["name"] == "dfl-acw"
    assert meta["network_data_format"]["inputs"]["image"]["channel_def"] == {"0": "R", "1": "G", "2": "B"}
    verify_net_in_out(net_id="network_def", meta_file=str(SHIPPED / "configs" / "metadata.json"),
                      config_file=str(SHIPPED / "configs" / "inference.json"), device="cpu")  # fmt: skip


def test_shipped_bundle_layout_and_no_weights_committed():
    for name in ("metadata.json", "train.json", "inference.json", "evaluate.json", "logging.conf"):
        assert (SHIPPED / "configs" / name).is_file(), name
    assert (SHIPPED / "docs" / "README.md").is_file()
    assert not list((SHIPPED / "models").glob("*.pt"))
    train = json.loads((SHIPPED / "configs" / "train.json").read_text())
    assert train["loss"]["_target_"] == "medseg_dfl.losses.DualFocalLoss" and train["loss"]["adaptive_weights"] is True
    for key in ("bundle_root", "dataset_dir", "output_dir", "ckpt_dir", "network_def"):
        assert key in train, key
    assert "trainer" in train["train"] and "evaluator" in train["validate"]


def shipped_model_scale(class_names: list[str]):
    """The red-cell scale a model trained by train.json records: training_scale of its training slides
    (as medseg-dfl train records it), which the shipped inference.json resamples each image to."""
    from medseg_dfl.cells.scale import training_scale
    from medseg_dfl.engine.rescale import recorded_model_scale

    dataset = SAMPLE / "blood_smear"
    training = json.loads((dataset / "dataset.json").read_text())["training"]
    return recorded_model_scale(training_scale([dataset / item["image"] for item in training]), class_names, 2)


def test_shipped_inference_config_is_what_export_writes_for_the_2d_config():
    """So the shipped bundle infers exactly as exported ones (and as medseg-dfl infer) do."""
    from medseg_dfl.bundle import inference_config
    from medseg_dfl.config import load_config

    cfg = load_config(SHIPPED.parents[1] / "configs" / "blood_smear_2d.yaml")
    scale = shipped_model_scale(cfg.data.class_names)
    meta = json.loads((SHIPPED / "configs" / "metadata.json").read_text())
    assert meta["medseg_dfl"]["scale"]["cell_diameter_px"] == scale.cell_diameter_px
    expected = inference_config(cfg, None, cfg.data.class_names, scale)
    shipped = json.loads((SHIPPED / "configs" / "inference.json").read_text())
    assert shipped.pop("dataset_dir") == "$@bundle_root + '/../../sample_data/blood_smear/images'"
    expected.pop("dataset_dir")
    assert shipped == json.loads(json.dumps(expected))


def test_train_one_epoch_then_infer_with_monai_bundle_run(tmp_path):
    """train.json runs one short epoch in SupervisedTrainer with DualFocalLoss (ACW), validates and
    writes models/model.pt; inference.json then segments the validation slides with it."""
    root = tmp_path / "bundle"
    small = {"network_def#channels": [8, 16, 32, 64]}  # a smaller UNet and 8 + 2 slides keep it fast
    run_bundle(
        SHIPPED / "configs" / "train.json", bundle_root=str(root), dataset_dir=str(SAMPLE / "blood_smear"),
        epochs=1, val_interval=1, **small,
        **{"train#dataset#data": "$@train_datalist[:8]", "validate#dataset#data": "$@val_datalist[:2]"},
    )  # fmt: skip
    state = torch.load(root / "models" / "model.pt", weights_only=True)  # a plain state_dict, as in the zoo
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and any(v.shape[0] == 8 for v in state.values())
    metrics = dict(line.split(",", 1) for line in (root / "eval" / "metrics.csv").read_text().splitlines())
    assert 0.0 <= float(metrics["val_mean_dice"]) <= 1.0 and math.isfinite(float(metrics["val_mean_dice"]))

    images = validation_images(SAMPLE / "blood_smear", tmp_path / "val")
    run_bundle(SHIPPED / "configs" / "inference.json", bundle_root=str(root), dataset_dir=str(images),
               output_dir=str(tmp_path / "masks"), **small)  # fmt: skip
    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == sorted(p.name for p in images.iterdir())
    mask = read_label_map(tmp_path / "masks" / masks[0])
    assert mask.shape == (1, 256, 256) and set(np.unique(mask)) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_python_m_monai_bundle_run_cli(tmp_path):
    """The documented command line itself (a subprocess: MONAI's fire-based CLI)."""
    root = tmp_path / "bundle"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json",
               "--bundle_root", str(root), "--dataset_dir", str(SAMPLE / "blood_smear"),
               "--epochs", "1", "--val_interval", "1", "--network_def#channels", "[8,16,32,64]"]  # fmt: skip
    done = subprocess.run(command, cwd=SHIPPED, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert any(v.shape[0] == 8 for v in state.values() if v.dim() == 4)  # the override took effect
