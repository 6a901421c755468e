"""Scale: red-cell diameter from the image at several magnifications, pixel size from metadata."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from medseg_dfl.cells.scale import (
    RBC_DIAMETER_UM,
    estimate_cell_diameter,
    fill_small_holes,
    pixel_size_from_file,
    resolve_scale,
)
from medseg_dfl.data.synthetic_smear import make_smear


@pytest.mark.parametrize("diameter,size", [(20, 256), (25, 256), (50, 320), (90, 480)])
def test_estimated_diameter_within_ten_percent_of_the_rendered_one(diameter, size):
    for seed in (0, 3):
        smear = make_smear(size, seed, cell_diameter=diameter)
        estimate = estimate_cell_diameter(smear.image)
        assert estimate == pytest.approx(smear.cell_diameter, rel=0.10), (seed, estimate, smear.cell_diameter)


def test_blank_image_has_no_estimate_and_resolve_falls_back_to_the_default():
    blank = np.full((64, 64, 3), 240, np.uint8)
    assert estimate_cell_diameter(blank) is None
    scale = resolve_scale(blank, default_diameter=25.0)
    assert scale.cell_diameter_px == 25.0 and scale.source.startswith("default")
    with pytest.raises(ValueError, match="--cell-diameter"):
        resolve_scale(blank)


def test_resolve_order_diameter_then_pixel_size_then_estimate():
    smear = make_smear(256, 1)
    assert resolve_scale(smear.image, cell_diameter=40).cell_diameter_px == 40
    by_size = resolve_scale(smear.image, pixel_size=0.25)
    assert by_size.cell_diameter_px == pytest.approx(RBC_DIAMETER_UM / 0.25) and by_size.pixel_size_um == 0.25
    estimated = resolve_scale(smear.image)
    assert estimated.source == "estimated from the image" and estimated.pixel_size_um is None
    with pytest.raises(ValueError, match="positive"):
        resolve_scale(smear.image, cell_diameter=0)


def test_pixel_size_from_tiff_resolution_and_ome(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    # 40000 pixels per cm = 0.25 um per pixel
    tifffile.imwrite(tmp_path / "tags.tif", image, resolution=(40000, 40000), resolutionunit="CENTIMETER")
    assert pixel_size_from_file(tmp_path / "tags.tif") == pytest.approx(0.25)
    tifffile.imwrite(tmp_path / "ome.ome.tif", image, photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.1, "PhysicalSizeXUnit": "µm"})  # fmt: skip
    assert pixel_size_from_file(tmp_path / "ome.ome.tif") == pytest.approx(0.1)
    # 72 dpi is a program's default, not a microscope's pixel size
    tifffile.imwrite(tmp_path / "dpi.tif", image, resolution=(72, 72), resolutionunit="INCH")
    assert pixel_size_from_file(tmp_path / "dpi.tif") is None
    scale = resolve_scale(image, path=tmp_path / "tags.tif")
    assert scale.source == "file metadata" and scale.cell_diameter_px == pytest.approx(30.0)


def test_fill_small_holes_fills_pale_centres_not_large_gaps():
    mask = np.zeros((60, 60), bool)
    mask[5:25, 5:25] = True
    mask[12:16, 12:16] = False  # 16 px pale centre
    mask[30:58, 30:58] = True
    mask[35:53, 35:53] = False  # 324 px enclosed gap
    filled = fill_small_holes(mask, 50)
    assert filled[12:16, 12:16].all() and not filled[35:53, 35:53].any()


def test_training_scale_of_the_sample_data_is_the_generators_diameter():
    from pathlib import Path

    from medseg_dfl.cells.scale import scale_from_config
    from medseg_dfl.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "blood_smear_2d.yaml", [f"data.root={root / 'sample_data' / 'blood_smear'}"])
    scale = scale_from_config(cfg)
    assert scale is not None and scale["cell_diameter_px"] == pytest.approx(25.0, rel=0.08)
    assert "training images" in scale["source"]
    volume = load_config(root / "configs" / "volume_3d.yaml")
    assert scale_from_config(volume) is None
