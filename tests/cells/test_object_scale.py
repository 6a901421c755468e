"""The object ruler of single-cell models: diameters from label maps and the factor chosen."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg_dfl.cells.object_scale import (
    SEARCH_FACTORS,
    choose_factor,
    largest_object_diameter,
    refine_factors,
    single_object_core_class,
    training_object_scale,
)


def _disc(size: int, diameter: float, value: int = 1, centre: tuple[float, float] | None = None) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cy, cx = centre or ((size - 1) / 2, (size - 1) / 2)
    return np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2, value, 0).astype(np.uint8)


def test_largest_object_diameter_is_the_equivalent_diameter_of_the_largest_component():
    mask = _disc(200, 60) + _disc(200, 20, value=2, centre=(20, 20))  # nucleus-like values count as foreground
    area = (_disc(200, 60) > 0).sum()
    assert largest_object_diameter(mask) == pytest.approx(math.sqrt(4 * area / math.pi))
    assert largest_object_diameter(mask) == pytest.approx(60, abs=1.0)
    assert largest_object_diameter(np.zeros((5, 5))) is None


def test_training_object_scale_is_the_median_over_label_maps(tmp_path):
    paths = []
    for n, diameter in enumerate((30, 40, 50, 41, 39)):
        path = tmp_path / f"{n}.png"
        Image.fromarray(_disc(100, diameter)).save(path)
        paths.append(path)
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "empty.png")
    entry = training_object_scale([*paths, tmp_path / "empty.png"])
    assert entry["object_diameter_px"] == pytest.approx(40, abs=1.0)
    assert "5 training label maps" in entry["object_source"]
    assert training_object_scale([tmp_path / "empty.png"]) is None
    assert training_object_scale([]) is None


def test_choose_factor_takes_the_closest_size_in_log_ratio_and_prefers_less_resampling_on_ties():
    # object diameters measured at the model's scale for each factor; target 40
    assert choose_factor({1.0: 100.0, 0.5: 50.0, 0.35: 35.0, 0.25: 25.0}, 40.0) == 0.35
    assert choose_factor({2.0: 80.0, 1.0: 20.0}, 40.0) == 1.0  # x2 and /2 away: tie -> factor nearest 1
    assert choose_factor({1.0: None, 0.5: None}, 40.0) is None
    assert choose_factor({1.0: None, 0.5: 41.0}, 40.0) == 0.5


def test_ladder_and_refinement_stay_in_range():
    assert SEARCH_FACTORS[0] == 0.25 and SEARCH_FACTORS[-1] == 2.0 and 1.0 in SEARCH_FACTORS
    assert refine_factors(0.5, SEARCH_FACTORS) == [round(0.5 * 2**-0.25, 4), round(0.5 * 2**0.25, 4)]
    assert refine_factors(0.25, SEARCH_FACTORS) == [round(0.25 * 2**0.25, 4)]  # never below the ladder


def test_a_runs_scale_entry_records_the_object_size_of_its_training_label_maps_only(tmp_path, monkeypatch):
    import medseg_dfl.cells.object_scale
    from medseg_dfl.cells.scale import scale_from_config
    from medseg_dfl.config import config_from_dict

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for n, diameter in enumerate((30, 30, 30, 30, 90)):  # the validation case (listed below) is far larger
        rgb = np.full((120, 120, 3), 230, np.uint8)
        rgb[_disc(120, diameter) > 0] = (120, 60, 160)
        Image.fromarray(rgb).save(tmp_path / "images" / f"c{n}.png")
        Image.fromarray(_disc(120, diameter, value=2)).save(tmp_path / "labels" / f"c{n}.png")
    entries = [{"image": f"images/c{n}.png", "label": f"labels/c{n}.png"} for n in range(5)]
    labels = {"0": "background", "1": "cytoplasm", "2": "nucleus"}
    listing = {"labels": labels, "training": entries[:4], "validation": entries[4:]}
    (tmp_path / "dataset.json").write_text(json.dumps(listing))
    read: list[str] = []
    original = medseg_dfl.cells.object_scale.load_image
    monkeypatch.setattr(medseg_dfl.cells.object_scale, "load_image", lambda p: read.append(Path(p).stem) or original(p))
    cfg = config_from_dict({"data": {"root": str(tmp_path), "class_names": ["background", "cytoplasm", "nucleus"]}})
    entry = scale_from_config(cfg)
    assert sorted(read) == ["c0", "c1", "c2", "c3"]
    assert entry["object_diameter_px"] == pytest.approx(30, abs=1.0)


def test_the_core_class_is_recorded_only_when_every_crop_holds_one_object():
    cell = _disc(64, 40) + _disc(64, 20)  # cytoplasm 1 with a nucleus 2 inside
    assert single_object_core_class([cell, cell]) == 2
    inverted = np.where(cell == 2, 1, np.where(cell == 1, 2, 0)).astype(np.uint8)
    assert single_object_core_class([inverted]) == 1  # the deepest class, whatever its value
    two = cell + _disc(64, 8, value=1, centre=(4, 4))
    assert single_object_core_class([cell, two]) is None
    assert single_object_core_class([_disc(64, 40)]) is None  # one class: nothing marks the object
