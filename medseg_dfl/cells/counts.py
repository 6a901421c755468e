"""Per-image counts and per-cell measurements of :class:`CellInstances`, and their CSV files.

``counts.csv``: one row per image: ``image``, one column per foreground class named exactly after
the class, then ``wbc_per_100_rbc`` and ``platelets_per_rbc`` (empty when the model has no such
classes or there are no red cells), then the scale used (``cell_diameter_px``, ``pixel_size_um``,
``scale_source``).

``cells.csv``: one row per cell: ``image``, ``cell`` (its number in the instance map), ``class``,
``centroid_x`` (column) and ``centroid_y`` (row) in pixels, ``area_px``, ``diameter_px``
(equivalent circle), ``diameter_um`` (empty when the pixel size is unknown), ``eccentricity``,
``solidity``, ``mean_r``/``mean_g``/``mean_b`` (0-255) and ``touches_border`` (the image border
cuts the cell, so its size is a lower bound). Measured with scikit-image ``regionprops_table``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage import measure

from medseg_dfl.cells.instances import CellInstances, cell_kind
from medseg_dfl.cells.scale import CellScale
from medseg_dfl.io.atomic import write_text
from medseg_dfl.io.spreadsheet import safe_rows

__all__ = [
    "CELL_COLUMNS",
    "cell_rows",
    "count_columns",
    "count_row",
    "write_cells_csv",
    "write_counts_csv",
]

CELL_COLUMNS = (
    "image", "cell", "class", "centroid_x", "centroid_y", "area_px", "diameter_px", "diameter_um",
    "eccentricity", "solidity", "mean_r", "mean_g", "mean_b", "touches_border",
)  # fmt: skip
_RATIOS = ("wbc_per_100_rbc", "platelets_per_rbc")
_SCALE = ("cell_diameter_px", "pixel_size_um", "scale_source")


def count_columns(class_names: Sequence[str]) -> list[str]:
    """``counts.csv`` header for a model with these classes (class 0, the background, left out)."""
    return ["image", *class_names[1:], *_RATIOS, *_SCALE]


def _kind_total(counts: dict[str, int], kind: str) -> int | None:
    found = [n for name, n in counts.items() if cell_kind(name) == kind]
    return sum(found) if found else None


def count_row(image: str, cells: CellInstances, scale: CellScale | None = None) -> dict[str, Any]:
    """One ``counts.csv`` row: counts per class, the ratios, the scale."""
    counts = cells.counts()
    rbc, wbc, platelets = (_kind_total(counts, kind) for kind in ("rbc", "wbc", "platelet"))
    row: dict[str, Any] = {"image": image, **counts}
    row["wbc_per_100_rbc"] = round(100.0 * wbc / rbc, 4) if rbc and wbc is not None else ""
    row["platelets_per_rbc"] = round(platelets / rbc, 4) if rbc and platelets is not None else ""
    row["cell_diameter_px"] = round(scale.cell_diameter_px, 2) if scale else ""
    row["pixel_size_um"] = scale.pixel_size_um if scale and scale.pixel_size_um else ""
    row["scale_source"] = scale.source if scale else ""
    return row


def cell_rows(image_name: str, cells: CellInstances, image: np.ndarray,
              pixel_size_um: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One ``cells.csv`` row per cell of ``cells`` (``image``: the (H, W, 3) RGB it was found in)."""
    if cells.count == 0:
        return []
    rgb = np.asarray(image)
    if rgb.shape[:2] != cells.labels.shape:
        raise ValueError(f"{image_name}: image {rgb.shape[:2]} and instance map {cells.labels.shape} differ in size")
    props = measure.regionprops_table(
        cells.labels, intensity_image=rgb[..., :3].astype(np.float32),
        properties=("label", "centroid", "area", "equivalent_diameter_area", "eccentricity", "solidity",
                    "intensity_mean", "bbox"),
    )  # fmt: skip
    height, width = cells.labels.shape
    rows = []
    for i, label in enumerate(props["label"]):
        diameter = float(props["equivalent_diameter_area"][i])
        touches = (props["bbox-0"][i] == 0 or props["bbox-1"][i] == 0
                   or props["bbox-2"][i] == height or props["bbox-3"][i] == width)  # fmt: skip
        rows.append({
            "image": image_name,
            "cell": int(label),
            "class": cells.class_names[int(cells.classes[label])],
            "centroid_x": round(float(props["centroid-1"][i]), 2),
            "centroid_y": round(float(props["centroid-0"][i]), 2),
            "area_px": int(props["area"][i]),
            "diameter_px": round(diameter, 2),
            "diameter_um": round(diameter * pixel_size_um, 3) if pixel_size_um else "",
            "eccentricity": round(float(props["eccentricity"][i]), 4),
            "solidity": round(float(props["solidity"][i]), 4),
            "mean_r": round(float(props["intensity_mean-0"][i]), 2),
            "mean_g": round(float(props["intensity_mean-1"][i]), 2),
            "mean_b": round(float(props["intensity_mean-2"][i]), 2),
            "touches_border": bool(touches),
        })  # fmt: skip
    return rows


def _csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(safe_rows(rows, ("image",)))  # a file named '=...' must not become a formula
    return buffer.getvalue()


def write_counts_csv(path: str | Path, rows: Sequence[dict[str, Any]], class_names: Sequence[str]) -> Path:
    """Write ``counts.csv`` atomically (a reader never sees half of it)."""
    return write_text(path, _csv_text(count_columns(class_names), rows))


def write_cells_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``cells.csv`` atomically."""
    return write_text(path, _csv_text(CELL_COLUMNS, rows))
