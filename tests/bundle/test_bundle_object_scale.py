"""A single-cell (white-cell) model's bundle gives ``medseg-dfl infer``'s masks: with ``cell_diameter``
set, those of ``infer --cell-diameter`` (each image resampled so the cell is the training size, the
probabilities back before the argmax, the one cell kept); with it null, the image's own size and the
one cell kept. Both mirror as ``infer`` does by default (tests/bundle/test_bundle_mirroring.py).
Smear bundles keep every object.

The hand-built network is scale-dependent and tells a nucleus from cytoplasm: stained pixels are
foreground, dark ones whose 9 x 9 window is all dark are nucleus (so the nucleus shrinks by 4 px at
the scale the network sees: 4 / factor px in the input). The white cell has a mid-grey red cell
pressed against it, which the network calls cytoplasm and only the single-object step removes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bundle_helpers import read_label_map, run_bundle, use_hand_built_network
from PIL import Image

from medseg_dfl.bundle import export_bundle
from medseg_dfl.bundle.transforms import KeepCoreObjectd, ToModelScaled
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES
from medseg_dfl.engine.inference import InferenceOptions, predict_folder
from medseg_dfl.engine.postprocess import keep_core_object

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

TRAINING_CELL = 40.0  # px: the object diameter the checkpoint records
CELL, NUCLEUS, RED = 120, 70, 70  # px in the input
NAMES = ["cell.png", "small.png"]


class NucleusCoreNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.mean(1, keepdim=True)
        stained = torch.sigmoid((0.8 - v) * 40)
        core = -F.max_pool2d(-torch.sigmoid((0.3 - v) * 40), 9, stride=1, padding=4)
        return 20 * torch.cat([1 - stained, stained * (1 - core), stained * core], 1)


@pytest.fixture(autouse=True)
def hand_built_network(monkeypatch):
    use_hand_built_network(monkeypatch, NucleusCoreNet)


@pytest.fixture
def wbc_model(tmp_path, write_wbc_checkpoint) -> Path:
    scale = {"object_diameter_px": TRAINING_CELL, "object_source": "test", "core_class": 2}
    return write_wbc_checkpoint(tmp_path / "wbc.pt", scale, {})  # the hand-built network has no weights


def _disc(shape, centre, diameter) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (diameter / 2) ** 2


def _save(value: np.ndarray, path: Path) -> None:
    Image.fromarray(np.round(value * 255).astype(np.uint8)[..., None].repeat(3, -1)).save(path)


@pytest.fixture
def crops(tmp_path) -> Path:
    """A white cell with a red cell against it, and a smaller lone white cell in another image size."""
    folder = tmp_path / "in"
    folder.mkdir()
    shape = (220, 260)
    value = np.full(shape, 0.95)
    value[_disc(shape, (110, 170), RED)] = 0.5
    value[_disc(shape, (110, 100), CELL)] = 0.5
    value[_disc(shape, (110, 100), NUCLEUS)] = 0.05
    _save(value, folder / "cell.png")
    shape = (150, 170)
    value = np.full(shape, 0.95)
    value[_disc(shape, (75, 85), 90)] = 0.5
    value[_disc(shape, (75, 85), 50)] = 0.05
    _save(value, folder / "small.png")
    return folder


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {name: read_label_map(folder / name)[0] for name in NAMES}


def _bundle_masks(bundle: Path, images: Path, out: Path, **override) -> dict[str, np.ndarray]:
    run_bundle(bundle / "configs" / "inference.json", bundle_root=str(bundle), dataset_dir=str(images),
               output_dir=str(out), device="$torch.device('cpu')", **override)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == NAMES
    return _masks(out)


def _assert_equal(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    for name in NAMES:
        assert ours[name].shape == theirs[name].shape, (name, ours[name].shape, theirs[name].shape)
        assert np.array_equal(ours[name], theirs[name]), f"{name}: {(ours[name] != theirs[name]).sum()} pixels differ"


def _red_only(shape) -> np.ndarray:
    return _disc(shape, (110, 170), RED) & ~_disc(shape, (110, 100), CELL + 8)


def test_cell_diameter_gives_infer_cell_diameter_masks(wbc_model, crops, tmp_path):
    bundle = export_bundle(wbc_model, tmp_path / "bundle")
    masks = _bundle_masks(bundle, crops, tmp_path / "masks", cell_diameter=float(CELL))
    predict_folder(wbc_model, crops, tmp_path / "infer", InferenceOptions(device="cpu", cell_diameter=float(CELL)))
    record = json.loads((tmp_path / "infer" / "scale.json").read_text())["images"]["cell.png"]
    assert record["factor"] == pytest.approx(TRAINING_CELL / CELL, abs=1e-5) and record["source"] == "--cell-diameter"
    _assert_equal(masks, _masks(tmp_path / "infer"))
    cell = masks["cell.png"]
    assert cell.shape == (220, 260) and set(np.unique(cell).tolist()) == {0, 1, 2}
    # the red cell is gone (single-object step), the white cell whole
    assert (cell[_red_only(cell.shape)] == 0).all()
    assert (cell[_disc(cell.shape, (110, 100), CELL - 8)] > 0).mean() > 0.99
    # seen at a third of its size, the nucleus lost 4-6 px of radius there (4 px of erosion, the
    # resampling's blur): three times that here (own size: 31 px, the null test)
    radius = np.sqrt((cell == 2).sum() / np.pi)
    assert NUCLEUS / 2 - 6 * 3 <= radius <= NUCLEUS / 2 - 4 * 3
    # infer with every object kept shows the red cell: the bundle's single-object step is what removed it
    predict_folder(wbc_model, crops, tmp_path / "all", InferenceOptions(device="cpu", cell_diameter=float(CELL),
                                                                       single_object=False))  # fmt: skip
    every = _masks(tmp_path / "all")["cell.png"]
    assert (every[_red_only(every.shape)] == 1).mean() > 0.95


def test_null_cell_diameter_is_the_own_size_prediction_with_the_one_cell_kept(wbc_model, crops, tmp_path):
    bundle = export_bundle(wbc_model, tmp_path / "bundle")
    masks = _bundle_masks(bundle, crops, tmp_path / "masks")
    # infer --no-rescale (own size, every object; infer keeps the one cell only on its rescaled path)
    predict_folder(wbc_model, crops, tmp_path / "plain", InferenceOptions(device="cpu", rescale=False))
    plain = _masks(tmp_path / "plain")
    _assert_equal(masks, {name: keep_core_object(mask, 2) for name, mask in plain.items()})
    assert (plain["cell.png"][_red_only((220, 260))] == 1).mean() > 0.95  # so the step did something
    assert (masks["cell.png"][_red_only((220, 260))] == 0).all()
    # the same as infer --cell-diameter at the training size (factor 1: the own size, the cell kept)
    predict_folder(wbc_model, crops, tmp_path / "unit", InferenceOptions(device="cpu", cell_diameter=TRAINING_CELL))
    _assert_equal(masks, _masks(tmp_path / "unit"))
    # own size: the nucleus lost only 4 px of radius (the scale-dependent network; not the 120 px result)
    radius = np.sqrt((masks["cell.png"] == 2).sum() / np.pi)
    assert NUCLEUS / 2 - 6 <= radius <= NUCLEUS / 2 - 4


def _config(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "inference.json").read_text())


def _steps(config: dict, section: str) -> list[dict]:
    return [{**item, "_target_": item["_target_"].rsplit(".", 1)[-1]} for item in config[section]["transforms"]]


def test_only_a_single_cell_bundle_keeps_one_object(wbc_model, tmp_path, write_wbc_checkpoint):
    smear = write_wbc_checkpoint(tmp_path / "smear.pt", {"cell_diameter_px": 25.0, "source": "test"}, {},
                                 list(SMEAR_CLASSES))  # fmt: skip
    config = _config(export_bundle(smear, tmp_path / "smear"))
    assert [s["_target_"] for s in _steps(config, "postprocessing")] == [
        "ClassProbabilitiesd", "FromModelScaled", "ProbabilitiesToLabelsd", "SaveRowsFirstd"]  # fmt: skip
    scaling = [s for s in _steps(config, "preprocessing") if s["_target_"] == "ToModelScaled"]
    assert scaling == [{"_target_": "ToModelScaled", "keys": "image", "model_diameter": 25.0,
                        "cell_diameter": "@cell_diameter", "pixel_size": "@pixel_size"}]  # fmt: skip

    bundle = export_bundle(wbc_model, tmp_path / "wbc")
    config = _config(bundle)
    assert config["cell_diameter"] is None and "pixel_size" not in config
    post = _steps(config, "postprocessing")
    assert [s["_target_"] for s in post] == [
        "ClassProbabilitiesd", "FromModelScaled", "ProbabilitiesToLabelsd", "KeepCoreObjectd", "SaveRowsFirstd"]  # fmt: skip
    assert post[3] == {"_target_": "KeepCoreObjectd", "keys": "pred", "core_class": 2}
    pre = _steps(config, "preprocessing")
    assert [s["_target_"] for s in pre] == ["LoadImaged", "EnsureChannelFirstd", "ToModelScaled", "ScaleIntensityRanged"]
    assert pre[2] == {"_target_": "ToModelScaled", "keys": "image", "model_diameter": TRAINING_CELL,
                      "cell_diameter": "@cell_diameter", "kind": "object"}  # fmt: skip
    readme = (bundle / "docs" / "README.md").read_text()
    assert "--cell_diameter 120" in readme and "KeepCoreObjectd" in readme and "searches" in readme

    # a single-cell model without a core class keeps every object, as infer does
    no_core = write_wbc_checkpoint(tmp_path / "no_core.pt", {"object_diameter_px": TRAINING_CELL}, {})
    config = _config(export_bundle(no_core, tmp_path / "no_core"))
    assert "KeepCoreObjectd" not in [s["_target_"] for s in _steps(config, "postprocessing")]
    assert "ToModelScaled" in [s["_target_"] for s in _steps(config, "preprocessing")]


def test_bad_object_scale_arguments_are_refused():
    with pytest.raises(ValueError, match="pixel_size 0.1: a single-cell model's ruler"):
        ToModelScaled("image", TRAINING_CELL, pixel_size=0.1, kind="object")
    with pytest.raises(ValueError, match="kind must be .* got 'wbc'"):
        ToModelScaled("image", TRAINING_CELL, kind="wbc")
    with pytest.raises(ValueError, match="--cell-diameter must be a positive number of pixels, got 0"):
        ToModelScaled("image", TRAINING_CELL, cell_diameter=0, kind="object")
    with pytest.raises(ValueError, match="core_class must be a foreground class index .* got 0"):
        KeepCoreObjectd("pred", core_class=0)
    with pytest.raises(ValueError, match=r"expected a \(1, H, W\) label map, got shape \(2, 4, 4\)"):
        KeepCoreObjectd("pred", core_class=2)({"pred": torch.zeros(2, 4, 4, dtype=torch.int32)})
