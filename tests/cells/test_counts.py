"""counts.csv and cells.csv on a hand-made mask: columns, counts, ratios, measurements."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medseg_dfl.cells.counts import (
    CELL_COLUMNS,
    cell_rows,
    count_columns,
    count_row,
    write_cells_csv,
    write_counts_csv,
)
from medseg_dfl.cells.instances import label_instances
from medseg_dfl.cells.scale import CellScale

CLASSES = ["background", "rbc", "wbc", "platelet"]


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """Four separate red cells (one cut by the left border), one white cell, two platelets."""
    mask = np.zeros((100, 160), np.uint8)
    yy, xx = np.ogrid[:100, :160]
    for cy, cx in [(25, 30), (25, 80), (75, 30), (50, 0)]:
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = 1
    mask[(yy - 70) ** 2 + (xx - 110) ** 2 <= 14**2] = 2
    mask[10:14, 140:144] = 3
    mask[90:93, 140:143] = 3
    image = np.full((100, 160, 3), 230, np.uint8)
    image[mask == 1] = (200, 120, 120)
    image[mask == 2] = (120, 80, 200)
    image[mask == 3] = (150, 60, 160)
    return mask, image


def test_counts_row_and_csv(tmp_path):
    mask, _ = hand_made()
    cells = label_instances(mask, CLASSES, cell_diameter=20)
    row = count_row("a.png", cells, CellScale(20.0, 0.375, "--pixel-size"))
    assert (row["rbc"], row["wbc"], row["platelet"]) == (4, 1, 2)
    assert row["wbc_per_100_rbc"] == 25.0 and row["platelets_per_rbc"] == 0.5
    path = write_counts_csv(tmp_path / "counts.csv", [row], CLASSES)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["image", "rbc", "wbc", "platelet", "wbc_per_100_rbc", "platelets_per_rbc"]
    assert list(rows[0]) == count_columns(CLASSES)
    assert rows[0]["rbc"] == "4" and rows[0]["scale_source"] == "--pixel-size"


def test_cell_rows_measure_each_cell(tmp_path):
    mask, image = hand_made()
    cells = label_instances(mask, CLASSES, cell_diameter=20)
    rows = cell_rows("a.png", cells, image, pixel_size_um=0.5)
    assert len(rows) == 7 and [r["cell"] for r in rows] == list(range(1, 8))
    by_class = {r["class"]: r for r in rows}
    wbc = by_class["wbc"]
    assert (wbc["centroid_x"], wbc["centroid_y"]) == pytest.approx((110, 70), abs=0.01)  # x: column, y: row
    assert wbc["area_px"] == int((mask == 2).sum())
    assert wbc["diameter_px"] == pytest.approx(28, rel=0.03) and wbc["diameter_um"] == pytest.approx(14, rel=0.03)
    assert (wbc["mean_r"], wbc["mean_g"], wbc["mean_b"]) == (120.0, 80.0, 200.0)
    assert wbc["eccentricity"] < 0.1 and wbc["solidity"] > 0.95 and wbc["touches_border"] is False
    cut = [r for r in rows if r["class"] == "rbc" and r["touches_border"]]
    assert len(cut) == 1 and cut[0]["centroid_x"] < 5
    path = write_cells_csv(tmp_path / "cells.csv", rows)
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == CELL_COLUMNS and len(read) == 7


def test_unknown_scale_leaves_microns_empty_and_sizes_must_match():
    mask, image = hand_made()
    cells = label_instances(mask, CLASSES, cell_diameter=20)
    assert all(r["diameter_um"] == "" for r in cell_rows("a.png", cells, image))
    with pytest.raises(ValueError, match="differ in size"):
        cell_rows("a.png", cells, image[:50])
    no_rbc = label_instances(np.where(mask == 1, 0, mask), CLASSES, cell_diameter=20)
    assert count_row("b.png", no_rbc)["wbc_per_100_rbc"] == ""
