"""A smear model's bundle resamples each image to the model's red-cell scale and the probabilities
back exactly as ``medseg-dfl infer`` does: identical labels on smears at two other magnifications
and on a real smear, and the ``cell_diameter`` override is ``infer --cell-diameter``.

The network is hand-built and scale-dependent (``bundle_helpers.EdgeInteriorNet``), so a bundle
that skipped or botched the resampling would give other masks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import SAMPLE, EdgeInteriorNet, read_label_map, run_bundle, use_hand_built_network
from PIL import Image

from medseg_dfl.bundle import export_bundle
from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
from medseg_dfl.engine.inference import InferenceOptions, predict_folder

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

MODEL_DIAMETER = 25.0
REAL_SMEAR = SAMPLE / "blood_smear_bccd" / "images" / "BloodImage_00001.png"


@pytest.fixture(autouse=True)
def hand_built_network(monkeypatch):
    use_hand_built_network(monkeypatch, EdgeInteriorNet)


@pytest.fixture
def smear_run(tmp_path) -> Path:
    """A run folder whose best.pt is the hand-built smear model, trained (so to speak) at 25 px red cells."""
    cfg = config_from_dict({
        "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3, "class_names": list(SMEAR_CLASSES)},
        "transforms": {"patch_size": [64, 64], "intensity": "rgb_0_1", "augment": {"flip": True}},
        "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    })  # fmt: skip
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(format_version=1, model_state=EdgeInteriorNet().state_dict(), config=config_to_dict(cfg),
                   class_names=list(SMEAR_CLASSES), scale={"cell_diameter_px": MODEL_DIAMETER, "source": "test"})  # fmt: skip
    save_checkpoint(tmp_path / "run" / "best.pt", payload)
    return tmp_path / "run"


@pytest.fixture
def smears(tmp_path) -> Path:
    """Smears at 2x and 3x the model's magnification (red cells 50 and 75 px) and one real smear."""
    folder = tmp_path / "smears"
    folder.mkdir()
    for diameter in (50, 75):
        sample = make_smear(240 if diameter == 50 else 300, 7, cell_diameter=float(diameter))
        Image.fromarray(sample.image).save(folder / f"smear_{diameter}.png")
    os.symlink(REAL_SMEAR, folder / REAL_SMEAR.name)
    return folder


def _bundle_masks(bundle: Path, images: Path, out: Path, **override) -> Path:
    run_bundle(bundle / "configs" / "inference.json", bundle_root=str(bundle), dataset_dir=str(images),
               output_dir=str(out), device="$torch.device('cpu')", **override)  # fmt: skip
    return out


def agreement(infer_dir: Path, bundle_dir: Path, names: list[str]) -> dict[str, float]:
    """Per image, the share of pixels whose labels are equal (shapes must match)."""
    shares = {}
    for name in names:
        ours, theirs = read_label_map(infer_dir / name), read_label_map(bundle_dir / name)
        assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
        shares[name] = float((ours == theirs).mean())
    return shares


def test_smear_bundle_rescales_exactly_as_infer(smear_run, smears, tmp_path):
    names = sorted(p.name for p in smears.iterdir())
    predict_folder(smear_run / "best.pt", smears, tmp_path / "infer", InferenceOptions(device="cpu"))
    bundle = export_bundle(smear_run, tmp_path / "bundle")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    assert config["cell_diameter"] is None and config["pixel_size"] is None
    steps = [item["_target_"].rsplit(".", 1)[-1] for item in config["preprocessing"]["transforms"]]
    assert steps == ["LoadImaged", "EnsureChannelFirstd", "ToModelScaled", "ScaleIntensityRanged"], steps
    masks = _bundle_masks(bundle, smears, tmp_path / "masks")
    assert sorted(p.name for p in masks.iterdir()) == names
    shares = agreement(tmp_path / "infer", masks, names)
    print("bundle vs infer pixel agreement:", shares)
    assert all(share == 1.0 for share in shares.values()), shares
    for name in names:  # masks at each input's own size, with the classes the model gives
        mask = read_label_map(masks / name)
        with Image.open(smears / name) as image:
            assert mask.shape == (1, image.height, image.width)
        assert {1, 2} <= set(np.unique(mask).tolist()), name
    # Without the rescaling the scale-dependent model gives other masks (the test can fail).
    predict_folder(smear_run / "best.pt", smears, tmp_path / "plain", InferenceOptions(device="cpu", rescale=False))
    plain = agreement(tmp_path / "plain", masks, names)
    assert plain["smear_75.png"] < 0.97, plain


def test_cell_diameter_override_is_infer_cell_diameter(smear_run, smears, tmp_path):
    synthetic = tmp_path / "one"
    synthetic.mkdir()
    os.symlink(smears / "smear_75.png", synthetic / "smear_75.png")
    bundle = export_bundle(smear_run, tmp_path / "bundle")
    predict_folder(smear_run / "best.pt", synthetic, tmp_path / "infer", InferenceOptions(device="cpu", cell_diameter=40.0))
    masks = _bundle_masks(bundle, synthetic, tmp_path / "masks", cell_diameter=40.0)
    assert agreement(tmp_path / "infer", masks, ["smear_75.png"]) == {"smear_75.png": 1.0}
    # And it is taken: the estimate (about 75 px) gives another mask.
    estimated = _bundle_masks(bundle, synthetic, tmp_path / "estimated")
    assert agreement(estimated, masks, ["smear_75.png"])["smear_75.png"] < 0.99
    # pixel_size likewise (7.5 um red cells: 0.1 um/px is 75 px).
    predict_folder(smear_run / "best.pt", synthetic, tmp_path / "infer_px", InferenceOptions(device="cpu", pixel_size=0.25))
    by_pixel = _bundle_masks(bundle, synthetic, tmp_path / "by_pixel", pixel_size=0.25)
    assert agreement(tmp_path / "infer_px", by_pixel, ["smear_75.png"]) == {"smear_75.png": 1.0}


def test_bad_scale_override_is_refused(smear_run, smears, tmp_path):
    bundle = export_bundle(smear_run, tmp_path / "bundle")
    with pytest.raises(RuntimeError, match="ToModelScaled") as raised:  # MONAI's wrapping of our ValueError
        _bundle_masks(bundle, smears, tmp_path / "masks", cell_diameter=-3)
    assert "--cell-diameter must be a positive number of pixels, got -3" in str(raised.value.__cause__)


def test_shipped_bundle_rescales_exactly_as_infer(smears, tmp_path):
    """bundles/blood_smear_dfl/configs/inference.json itself (its network swapped for the hand-built
    one, which has no weights) against infer on a checkpoint of the config it follows, recording the
    red-cell scale the shipped config resamples to."""
    import torch
    from bundle_helpers import SHIPPED

    from medseg_dfl.config import load_config

    shipped = json.loads((SHIPPED / "configs" / "inference.json").read_text())
    model_diameter = next(item["model_diameter"] for item in shipped["preprocessing"]["transforms"]
                          if item["_target_"].endswith("ToModelScaled"))  # fmt: skip
    cfg = load_config(SHIPPED.parents[1] / "configs" / "blood_smear_2d.yaml")
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(format_version=1, model_state={}, config=config_to_dict(cfg), class_names=list(cfg.data.class_names),
                   scale={"cell_diameter_px": model_diameter, "source": "test"})  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "shipped.pt", payload)
    names = sorted(p.name for p in smears.iterdir())
    predict_folder(checkpoint, smears, tmp_path / "infer", InferenceOptions(device="cpu"))
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    torch.save({}, root / "models" / "model.pt")
    run_bundle(SHIPPED / "configs" / "inference.json", bundle_root=str(root), dataset_dir=str(smears),
               output_dir=str(tmp_path / "masks"), device="$torch.device('cpu')",
               network_def={"_target_": "bundle_helpers.EdgeInteriorNet"})  # fmt: skip
    shares = agreement(tmp_path / "infer", tmp_path / "masks", names)
    print("shipped bundle vs infer pixel agreement:", shares)
    assert all(share == 1.0 for share in shares.values()), shares
    assert all(len(np.unique(read_label_map(tmp_path / "masks" / name))) > 1 for name in names)
