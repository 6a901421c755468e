"""`generate_sample_data` / `medseg-dfl sample-data`: varied smears and instance maps on disk."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.data.synthetic import (
    CELLS_CSV,
    VARIED_DIAMETERS,
    generate_sample_data,
    sample_seed,
    smear_sample,
)
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_instances_are_16_bit_maps_that_agree_with_labels_and_cells_csv(tmp_path):
    generate_sample_data(tmp_path, "blood-smear", 3, 96, seed=2, variety=True, instances=True)
    rows = _rows(tmp_path / CELLS_CSV)
    assert list(rows[0]) == ["image", "cell", "class", "centroid_x", "centroid_y", "area_px"]
    for i in range(3):
        name = f"smear_{i:03d}.png"
        picture = Image.open(tmp_path / "instances" / name)
        ids = np.asarray(picture)
        label = np.asarray(Image.open(tmp_path / "labels" / name))
        smear = smear_sample(96, sample_seed(2, "blood-smear", i), variety=True)
        assert picture.mode == "I;16" and ids.shape == label.shape
        np.testing.assert_array_equal(ids, smear.instances)
        mine = {int(r["cell"]): r for r in rows if r["image"] == name}
        assert sorted(mine) == sorted(set(np.unique(ids)) - {0})
        for cell, row in mine.items():
            pixels = label[ids == cell]
            assert (pixels == SMEAR_CLASSES.index(row["class"])).all() and int(row["area_px"]) == pixels.size
            y, x = np.argwhere(ids == cell).mean(axis=0)
            assert float(row["centroid_x"]) == pytest.approx(x, abs=0.01)
            assert float(row["centroid_y"]) == pytest.approx(y, abs=0.01)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["generator"]["variety"] is True and meta["generator"]["instances"] is True


def test_varied_smears_span_a_range_of_magnifications():
    diameters = [smear_sample(64, sample_seed(0, "blood-smear", i), variety=True).cell_diameter for i in range(12)]
    low, high = VARIED_DIAMETERS
    assert all(0.9 * low <= d <= 1.1 * high for d in diameters)  # the slide's own +-10 % on top
    assert max(diameters) - min(diameters) > 0.4 * (high - low)
    assert smear_sample(64, 5).cell_diameter == pytest.approx(25, rel=0.1)  # plain: the default magnification


def test_overwrite_without_instances_removes_the_old_ones(tmp_path):
    generate_sample_data(tmp_path, "blood-smear", 2, 64, seed=1, instances=True)
    generate_sample_data(tmp_path, "blood-smear", 2, 64, seed=1, overwrite=True)
    assert not (tmp_path / CELLS_CSV).exists() and list((tmp_path / "instances").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["smear_000.png", "smear_001.png"]


def test_volumes_refuse_smear_options_before_writing(tmp_path):
    with pytest.raises(ValueError, match="instances"):
        generate_sample_data(tmp_path / "v", "volume", 1, 24, instances=True)
    assert not (tmp_path / "v").exists()


def test_cli_variety_and_instances(tmp_path):
    out = tmp_path / "smears"
    args = ["sample-data", str(out), "--count", "2", "--size", "64", "--seed", "4", "--variety", "--instances"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "instances").iterdir()) == ["smear_000.png", "smear_001.png"]
    expected = smear_sample(64, sample_seed(4, "blood-smear", 1), variety=True)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images/smear_001.png")), expected.image)
    assert {r["image"] for r in _rows(out / CELLS_CSV)} == {"smear_000.png", "smear_001.png"}
