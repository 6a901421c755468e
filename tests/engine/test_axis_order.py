"""One axis order for 2D images: a non-square smear (48 rows, 80 columns) with a red blob in its
top-right corner goes through ``infer``, ``count``, ``evaluate``, the overlay and an exported
bundle, and every output has the blob where the image has it, read rows first as PIL reads it.

The network is a deterministic stand-in (red channel above one half -> red cell), so every
assertion is exact."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.networks.nets import UNet
from PIL import Image

import medseg_dfl.engine.inference
from medseg_dfl.bundle import export_bundle
from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
from medseg_dfl.engine.counting import CountOptions, count_cells
from medseg_dfl.engine.evaluation import evaluate_folders
from medseg_dfl.engine.inference import InferenceOptions, predict_folder
from medseg_dfl.io.readers import load_image
from medseg_dfl.visualize.overlays import overlay_figure

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

HEIGHT, WIDTH = 48, 80
DIAMETER = 12.0
TOP_RIGHT, BOTTOM_LEFT = (9, 70), (38, 12)  # (row, column) of the two red cells' centres
UNET = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


class ThresholdUNet(UNet):
    """A UNet's weights (so checkpoints and bundles take them) and a fixed rule instead of its
    layers: red channel (0..1) above 0.5 -> rbc (class 1), else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, :1]
        never = torch.full_like(red, -100.0)
        return torch.cat([10 - 20 * red, 20 * red - 10, never, never], dim=1)


def _disc(centre: tuple[int, int], radius: int) -> np.ndarray:
    rows, cols = np.ogrid[:HEIGHT, :WIDTH]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _expected() -> np.ndarray:
    return (_disc(TOP_RIGHT, 6) | _disc(BOTTOM_LEFT, 5)).astype(np.uint8)


def _smear() -> np.ndarray:
    rgb = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    rgb[_expected() == 1, 0] = 255
    return rgb


@pytest.fixture(autouse=True)
def threshold_network(monkeypatch):
    monkeypatch.setattr(medseg_dfl.engine.inference, "build_network",
                        lambda cfg: ThresholdUNet(spatial_dims=2, in_channels=3, out_channels=4, **UNET))  # fmt: skip


@pytest.fixture
def run_dir(tmp_path) -> Path:
    cfg = config_from_dict({
        "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3, "class_names": list(SMEAR_CLASSES)},
        "transforms": {"patch_size": [32, 64], "intensity": "rgb_0_1"},  # (H, W): a non-square window
        "network": {"name": "UNet", "kwargs": UNET},
    })  # fmt: skip
    payload = dict.fromkeys(PAYLOAD_KEYS)
    net = ThresholdUNet(spatial_dims=2, in_channels=3, out_channels=4, **UNET)
    payload.update(format_version=1, model_state=net.state_dict(), config=config_to_dict(cfg),
                   class_names=list(SMEAR_CLASSES), scale={"cell_diameter_px": DIAMETER, "source": "test"})  # fmt: skip
    save_checkpoint(tmp_path / "run" / "best.pt", payload)
    return tmp_path / "run"


@pytest.fixture
def smears(tmp_path) -> Path:
    folder = tmp_path / "smears"
    folder.mkdir()
    Image.fromarray(_smear()).save(folder / "smear.png")
    tifffile.imwrite(folder / "smear_tiff.tif", _smear(), photometric="rgb")
    return folder


def _rows_first(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_loaded_arrays_are_rows_first(smears):
    for name in ("smear.png", "smear_tiff.tif"):
        image = load_image(smears / name)
        assert tuple(image.shape) == (3, HEIGHT, WIDTH)
        np.testing.assert_array_equal(image[0].numpy() == 255, _expected() == 1)


@pytest.mark.parametrize("rescale", [True, False])
def test_infer_masks_and_evaluate(tmp_path, run_dir, smears, rescale):
    options = InferenceOptions(device="cpu", rescale=rescale, cell_diameter=DIAMETER if rescale else None,
                               overlay=True, probabilities=True)  # fmt: skip
    summary = predict_folder(run_dir / "best.pt", smears, tmp_path / "masks", options)
    assert not summary.failed and len(summary.written) == 2
    for stem in ("smear", "smear_tiff"):
        mask = _rows_first(tmp_path / "masks" / f"{stem}.png")
        assert mask.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(mask, _expected())
        assert mask[TOP_RIGHT] == 1 and mask[:16, -20:].sum() == _disc(TOP_RIGHT, 6).sum()
        assert mask[:16, :20].sum() == 0  # nothing in the top-left corner
        probs = tifffile.imread(tmp_path / "masks" / f"{stem}_probabilities.tif")  # (C, H, W)
        assert probs.shape == (4, HEIGHT, WIDTH) and probs[1][TOP_RIGHT] > 0.99 and probs[0][0, 0] > 0.95
        assert (tmp_path / "masks" / f"{stem}_overlay.png").is_file()
    truth = tmp_path / "truth"
    truth.mkdir()
    for stem in ("smear", "smear_tiff"):
        Image.fromarray(_expected()).save(truth / f"{stem}.png")
    report = evaluate_folders(tmp_path / "masks", truth, list(SMEAR_CLASSES))
    for case in report.cases:
        assert case.metrics["dice"][0] == 1.0 and case.metrics["hd95"][0] == 0.0


def test_count_classes_and_centroids(tmp_path, run_dir, smears):
    summary = count_cells(run_dir / "best.pt", smears, tmp_path / "count",
                          CountOptions(cell_diameter=DIAMETER, device="cpu"))  # fmt: skip
    assert not summary.failed
    for stem in ("smear", "smear_tiff"):
        np.testing.assert_array_equal(_rows_first(tmp_path / "count" / f"{stem}_classes.png"), _expected())
        cells = _rows_first(tmp_path / "count" / f"{stem}_cells.png")
        assert cells.shape == (HEIGHT, WIDTH) and cells[TOP_RIGHT] > 0 and cells[BOTTOM_LEFT] > 0
    with open(tmp_path / "count" / "cells.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["image"] == "smear.png"]
    centres = sorted((round(float(r["centroid_y"])), round(float(r["centroid_x"]))) for r in rows)
    assert centres == sorted([TOP_RIGHT, BOTTOM_LEFT])  # (row, column): centroid_y is the row


def test_overlay_draws_the_mask_where_the_image_has_it():
    image = np.moveaxis(_smear(), -1, 0).astype(np.float32)  # (C, H, W)
    fig = overlay_figure(image, _expected(), list(SMEAR_CLASSES))
    ax = fig.axes[0]
    shown, painted = ax.images[0].get_array(), ax.images[1].get_array()
    assert shown.shape[:2] == painted.shape[:2] == (HEIGHT, WIDTH)
    assert ax.images[1].origin == "upper"  # row 0 at the top
    np.testing.assert_array_equal(np.asarray(painted)[..., 3] > 0, _expected() == 1)
    assert np.asarray(shown)[TOP_RIGHT][0] == 1.0 and np.asarray(shown)[0, 0][0] == 0.0  # red blob, grey ground


def test_exported_bundle_writes_the_blob_top_right(tmp_path, run_dir, smears):
    import monai.bundle

    bundle = export_bundle(run_dir, tmp_path / "bundle")
    monai.bundle.run(config_file=str(bundle / "configs" / "inference.json"), logging_file=False,
                     bundle_root=str(bundle), dataset_dir=str(smears), output_dir=str(tmp_path / "out"),
                     device="$torch.device('cpu')", cell_diameter=DIAMETER,  # the scale infer is given above
                     **{"network_def#_target_": f"{__name__}.ThresholdUNet"})  # fmt: skip
    for stem in ("smear", "smear_tiff"):
        mask = _rows_first(tmp_path / "out" / f"{stem}.png")
        assert mask.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(mask, _expected())
