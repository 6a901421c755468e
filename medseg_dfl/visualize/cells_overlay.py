"""Cell overlays at the image's own resolution: each instance's contour in its class colour, its
number (the ``cell`` column of ``cells.csv``), a legend with the counts, and optionally the ground
truth's instances in a second panel beside the prediction.

Drawn with Pillow directly on the pixels (no figure canvas that would shrink a large slide). The
class colours (green, cyan, yellow, ...) are chosen to stand out from Wright/Giemsa stains (pink
red cells, purple nuclei and platelets). Contours and numbers grow with the cell size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from skimage.segmentation import find_boundaries

from medseg_dfl.cells.instances import CellInstances, cell_kind
from medseg_dfl.io.atomic import atomic_path

__all__ = ["CLASS_COLOURS", "draw_cells", "save_cells_overlay"]

CLASS_COLOURS = {
    "rbc": (40, 230, 70),  # green: the complement of the pink red cells
    "wbc": (0, 220, 255),  # cyan
    "platelet": (255, 230, 0),  # yellow
    "other": (255, 255, 255),
}
_EXTRA = [(255, 120, 0), (255, 255, 255), (120, 255, 200)]


def _colour(class_names: list[str], index: int) -> tuple[int, int, int]:
    kind = cell_kind(class_names[index])
    if kind != "other":
        return CLASS_COLOURS[kind]
    return _EXTRA[index % len(_EXTRA)]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(8, size))
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    rgb = rgb[..., :3].astype(np.float32)
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _legend(draw: ImageDraw.ImageDraw, cells: CellInstances, title: str, font_size: int) -> None:
    counts = cells.counts()
    lines = [(title, (255, 255, 255))] + [
        (f"{name}: {counts[name]}", _colour(cells.class_names, i)) for i, name in enumerate(cells.class_names) if i
    ]
    font = _font(font_size)
    pad, step = font_size // 2, int(font_size * 1.3)
    width = max(int(draw.textlength(text, font=font)) for text, _ in lines) + 2 * pad
    draw.rectangle([0, 0, width, pad * 2 + step * len(lines)], fill=(0, 0, 0))
    for row, (text, colour) in enumerate(lines):
        draw.text((pad, pad + row * step), text, fill=colour, font=font)


def draw_cells(image: np.ndarray, cells: CellInstances, cell_diameter: float, title: str = "prediction",
               numbers: bool = True) -> np.ndarray:  # fmt: skip
    """(H, W, 3) uint8: ``image`` with each cell's contour, number and a legend."""
    canvas = _as_rgb8(image).copy()
    if canvas.shape[:2] != cells.labels.shape:
        raise ValueError(f"image {canvas.shape[:2]} and instance map {cells.labels.shape} differ in size")
    edges = find_boundaries(cells.labels, mode="inner")
    thickness = max(1, round(cell_diameter / 40))
    if thickness > 1:
        edges = ndimage.binary_dilation(edges, iterations=thickness - 1) & (cells.labels > 0)
    palette = np.array([_colour(cells.class_names, max(c, 1)) for c in range(len(cells.class_names))], np.uint8)
    canvas[edges] = palette[cells.classes[cells.labels[edges]]]
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font_size = int(np.clip(cell_diameter * 0.35, 9, 40))
    if numbers and cells.count:
        font = _font(font_size)
        centres = ndimage.center_of_mass(np.ones(cells.labels.shape), cells.labels, np.arange(1, cells.count + 1))
        for ident, (row, col) in enumerate(centres, start=1):
            colour = tuple(int(v) for v in palette[cells.classes[ident]])
            draw.text((col, row), str(ident), fill=colour, font=font, anchor="mm", stroke_width=1,
                      stroke_fill=(0, 0, 0))  # fmt: skip
    _legend(draw, cells, title, font_size)
    return np.asarray(picture)


def save_cells_overlay(path: str | Path, image: np.ndarray, cells: CellInstances, cell_diameter: float,
                       truth: CellInstances | None = None) -> Path:  # fmt: skip
    """Write the overlay PNG atomically; with ``truth``, its panel is placed to the right."""
    panel = draw_cells(image, cells, cell_diameter, "prediction")
    if truth is not None:
        gap = np.full((panel.shape[0], max(4, panel.shape[1] // 100), 3), 255, np.uint8)
        panel = np.concatenate([panel, gap, draw_cells(image, truth, cell_diameter, "ground truth")], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(panel).save(tmp, format="PNG")
    return Path(path)
