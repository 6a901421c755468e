"""What BCCD's boxes leave out, made explicit: reviewed platelets, red-cell hand counts, error crops.

BCCD boxes some of the cells, not all (docs/results/bccd/README.md). Two small reference files,
made by looking at the images and committed beside the results, complete it where it matters:

- ``platelet_review_<split>.csv`` (image, x, y, verdict): every platelet a model found that matched
  no BCCD box, looked at in a crop (``--error-crops`` writes them) and judged ``platelet`` (a small
  violet object BCCD did not box), ``not_platelet`` or ``unsure``. Points judged ``platelet`` are
  added as small platelet boxes, so a detection there counts as a match; ``unsure`` ones are not.
  The review covers the unmatched detections of the models it was made with (named in
  docs/results/bccd/README.md); another model's unmatched platelets elsewhere still count against it,
  and platelets no reviewed model found are missing from it (recall against it is optimistic).
- ``rbc_hand_counts_<split>.csv`` (image, rbc_hand_count): red cells counted by eye on the raw
  image (cells with at least about a quarter in view), without seeing any model's output.

Used by ``bccd_counts.py`` (``--platelet-review``, ``--rbc-hand-counts``, ``--error-crops``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from medseg_dfl.io.atomic import write_bytes, write_text

Box = tuple[str, float, float, float, float]
Cell = tuple[str, float, float]

# Half-width of the box put around a reviewed platelet, in red-cell diameters (a platelet is about
# a third of a red cell across; the same model's centroid lies within a pixel of the point).
REVIEW_HALF_WIDTH = 0.15
_CROP = 48  # px of the source image either side of a crop's centre; shown 2x enlarged


def read_platelet_review(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """image -> [(x, y, verdict)] from a review CSV."""
    review: dict[str, list[tuple[float, float, str]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["verdict"] not in ("platelet", "not_platelet", "unsure"):
                raise ValueError(f"{path}: verdict must be platelet, not_platelet or unsure, got {row['verdict']!r}")
            review.setdefault(row["image"], []).append((float(row["x"]), float(row["y"]), row["verdict"]))
    return review


def reviewed_boxes(review: dict[str, list[tuple[float, float, str]]], image: str, diameter: float) -> list[Box]:
    """Small platelet boxes around the points of ``image`` judged to be platelets."""
    half = REVIEW_HALF_WIDTH * diameter
    return [("platelet", x - half, y - half, x + half, y + half)
            for x, y, verdict in review.get(image, []) if verdict == "platelet"]  # fmt: skip


def read_hand_counts(path: Path) -> dict[str, int]:
    with open(path, newline="") as handle:
        return {row["image"]: int(row["rbc_hand_count"]) for row in csv.DictReader(handle)}


def hand_count_errors(rows: list[dict], hand: dict[str, int]) -> str:
    """A markdown line per reference (this run's count, BCCD's boxes) against the hand counts."""
    scored = [r for r in rows if r["image"] in hand]
    if not scored:
        return "red-cell hand counts: none of their images is in this split"
    truth = np.array([hand[r["image"]] for r in scored], dtype=float)
    lines = [f"red cells against hand counts ({len(scored)} images, counted by eye without model output):", ""]
    lines += ["| | median abs. rel. error | mean signed rel. error | worst |", "|---|---|---|---|"]
    for label, key in (("medseg-dfl count", "rbc_found"), ("BCCD boxes", "rbc_boxes")):
        counts = np.array([r[key] for r in scored], dtype=float)
        rel = (counts - truth) / truth
        worst = int(np.argmax(np.abs(rel)))
        lines.append(f"| {label} | {100 * np.median(np.abs(rel)):.0f} % | {100 * rel.mean():+.0f} % | "
                     f"{scored[worst]['image']} {counts[worst]:.0f} / {truth[worst]:.0f} |")  # fmt: skip
    return "\n".join(lines)


def assign(cells: list[Cell], boxes: list[Box]) -> tuple[list[int | None], list[bool]]:
    """The box each cell matches (its centroid inside a not yet matched box of its kind, the
    nearest box centre first; None: no box) and which boxes were matched. The one matching rule of
    ``bccd_counts.py``: its scores and the error crops both come from here."""
    used = [False] * len(boxes)
    matches: list[int | None] = []
    for kind, x, y in cells:
        best, best_dist = None, np.inf
        for i, (bkind, x0, y0, x1, y1) in enumerate(boxes):
            if used[i] or bkind != kind or not (x0 <= x <= x1 and y0 <= y <= y1):
                continue
            dist = np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2)
            if dist < best_dist:
                best, best_dist = i, dist
        if best is not None:
            used[best] = True
        matches.append(best)
    return matches, used


def _crop(rgb: np.ndarray, x: float, y: float, label: str, box: Box | None = None) -> Image.Image:
    x0, y0 = int(x) - _CROP, int(y) - _CROP
    tile = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).crop((x0, y0, x0 + 2 * _CROP, y0 + 2 * _CROP))
    tile = tile.resize((4 * _CROP, 4 * _CROP))
    draw = ImageDraw.Draw(tile)
    draw.ellipse([2 * _CROP - 6, 2 * _CROP - 6, 2 * _CROP + 6, 2 * _CROP + 6], outline=(255, 255, 0))
    if box is not None:
        draw.rectangle([2 * (box[1] - x0), 2 * (box[2] - y0), 2 * (box[3] - x0), 2 * (box[4] - y0)],
                       outline=(0, 255, 255))  # fmt: skip
    draw.text((3, 3), label, fill=(0, 0, 0))
    return tile


class ErrorCrops:
    """Collects a crop around every unmatched platelet (false positive against the boxes) and every
    unmatched platelet box (false negative); ``save`` writes two grids and a CSV to review."""

    def __init__(self) -> None:
        self.found: list[tuple[str, Cell, Image.Image]] = []
        self.missed: list[Image.Image] = []

    def add(self, image: str, rgb: np.ndarray, cells: list[Cell], boxes: list[Box]) -> None:
        matches, used = assign(cells, boxes)
        extra = [cell for cell, box in zip(cells, matches, strict=True) if cell[0] == "platelet" and box is None]
        left = [box for box, hit in zip(boxes, used, strict=True) if box[0] == "platelet" and not hit]
        for cell in extra:
            self.found.append((image, cell, _crop(rgb, cell[1], cell[2], f"{len(self.found)} {image[-5:]}")))
        for box in left:
            centre = ((box[1] + box[3]) / 2, (box[2] + box[4]) / 2)
            self.missed.append(_crop(rgb, *centre, f"missed {len(self.missed)} {image[-5:]}", box))

    def save(self, folder: Path, split: str) -> None:
        lines = ["index,image,x,y,verdict"]
        lines += [f"{i},{image},{x:.1f},{y:.1f}," for i, (image, (_, x, y), _) in enumerate(self.found)]
        write_text(folder / f"unmatched_platelets_{split}.csv", "\n".join(lines) + "\n")
        _save_grid(folder / f"unmatched_platelets_{split}.jpg", [t for _, _, t in self.found])
        _save_grid(folder / f"missed_platelet_boxes_{split}.jpg", self.missed)


def _save_grid(path: Path, tiles: list[Image.Image], columns: int = 8) -> None:
    if not tiles:
        return
    size = tiles[0].size[0]
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * size, rows * size))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * size, (i // columns) * size))
    buffer = io.BytesIO()
    grid.save(buffer, format="JPEG", quality=85)
    write_bytes(path, buffer.getvalue())
