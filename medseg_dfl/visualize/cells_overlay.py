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


def _legend_strip(cells: CellInstances, title: str, font_size: int, width: int) -> np.ndarray:
    """A black strip (rows, ``width``, 3) with the title and each class's count in its colour, laid
    out left to right and wrapped: below the image, so it hides no cell."""
    counts = cells.counts()
    items = [(title, (255, 255, 255))] + [
        (f"{name}: {counts[name]}", _colour(cells.class_names, i)) for i, name in enumerate(cells.class_names) if i
    ]
    font = _font(font_size)
    pad, step = font_size // 2, int(font_size * 1.3)
    measure_text = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    places, x, row = [], pad, 0
    for text, colour in items:
        length = int(measure_text(text, font=font))
        if x > pad and x + length > width - pad:  # wrap
            x, row = pad, row + 1
        places.append((x, row, text, colour))
        x += length + 2 * font_size
    strip = Image.new("RGB", (width, 2 * pad + step * (row + 1)), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for x, row, text, colour in places:
        draw.text((x, pad + row * step), text, fill=colour, font=font)
    return np.asarray(strip)


def draw_cells(image: np.ndarray, cells: CellInstances, cell_diameter: float, title: str = "prediction",
               numbers: bool = True) -> np.ndarray:  # fmt: skip
    """(H + legend, W, 3) uint8: ``image`` with each cell's contour and number, at its own
    resolution, above a legend strip with the counts."""
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
    return np.concatenate([np.asarray(picture), _legend_strip(cells, title, font_size, canvas.shape[1])], axis=0)


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
