"""White-cell crops from BCCD's smears (MIT), with weak nucleus / cytoplasm masks: a second lab for
white-cell models.

segmentation_WBC's Dataset 1 comes from one lab: pale yellow background, faint red cells. A model
trained on it alone labels another lab's dense pink red cells as cytoplasm. BCCD (another lab,
another stain, another camera) boxes its white cells; a square crop around each ``WBC`` box, scaled
so the cell is as large as in the white-cell training images, shows the white cell among red cells
that are background:

- white cell: the region :func:`medseg_dfl.datasets.bccd_masks.mask_from_boxes` gives a ``WBC`` box
  (the stained nucleus plus the ellipse inscribed in the box, less the red cells reaching into it);
- nucleus: the stained pixels of that region (blue excess above Otsu's threshold of the box, at
  least ``MaskParams.stain_min``), holes up to 2 % of the cell filled; cytoplasm: the rest;
- everything else, red cells and platelets included, background.

**Weak labels**: the cytoplasm outline is an ellipse from a box, the nucleus a threshold. Good
enough to teach what red cells and another stain look like, not to score against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medseg_dfl.datasets.bccd import Box, parse_annotation
from medseg_dfl.datasets.bccd_masks import WBC, MaskParams, _stained_in_box, mask_from_boxes, stain_score

__all__ = ["BACKGROUND", "CYTOPLASM", "NUCLEUS", "white_cell_crops", "write_white_cell_crops"]

BACKGROUND, CYTOPLASM, NUCLEUS = 0, 1, 2


def _square(box: Box, ratio: float) -> tuple[int, int, int]:
    """(centre row, centre column, side) of the square crop ``ratio`` times the box's longer side."""
    _, x0, y0, x1, y1 = box
    return round((y0 + y1) / 2), round((x0 + x1) / 2), max(8, round(ratio * max(x1 - x0, y1 - y0)))


def _crop(array: np.ndarray, row: int, col: int, side: int) -> np.ndarray:
    """A ``side`` x ``side`` crop centred at (row, col); the part outside the image is mirrored (image
    and mask alike, so the labels stay true to the pixels)."""
    top, left = row - side // 2, col - side // 2
    pad = [(max(0, -top), max(0, top + side - array.shape[0])), (max(0, -left), max(0, left + side - array.shape[1]))]
    padded = np.pad(array, pad + [(0, 0)] * (array.ndim - 2), mode="symmetric")
    top, left = top + pad[0][0], left + pad[1][0]
    return padded[top : top + side, left : left + side]


def white_cell_crops(
    rgb: np.ndarray, boxes: Sequence[Box], size: int, object_diameter: float, params: MaskParams | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (size, size, 3) uint8, mask (size, size) uint8 0/1/2) for each ``wbc`` box of an
    (H, W, 3) smear, scaled so the box's longer side becomes ``object_diameter`` px."""
    params = params or MaskParams()
    rgb = np.asarray(rgb, dtype=np.float32)
    semantic = mask_from_boxes(rgb, boxes, params=params)
    score = stain_score(rgb)
    crops = []
    for box in (b for b in boxes if b[0] == "wbc"):
        cell = semantic == WBC
        region = np.zeros_like(cell)
        _, x0, y0, x1, y1 = box
        region[max(0, y0) : y1, max(0, x0) : x1] = True
        cell &= region
        if not cell.any():
            continue
        nucleus = _stained_in_box(score, box, params.stain_min) & cell
        holes = ndimage.binary_fill_holes(nucleus) & ~nucleus
        labels, _ = ndimage.label(holes)
        small = np.bincount(labels.ravel()) <= 0.02 * cell.sum()
        small[0] = False
        nucleus |= small[labels] & cell
        mask = np.where(nucleus, NUCLEUS, np.where(cell, CYTOPLASM, BACKGROUND)).astype(np.uint8)
        row, col, side = _square(box, size / object_diameter)
        image = Image.fromarray(np.clip(_crop(rgb, row, col, side), 0, 255).astype(np.uint8))
        labels_img = Image.fromarray(_crop(mask, row, col, side))
        crops.append((np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=None)),
                      np.asarray(labels_img.resize((size, size), Image.NEAREST))))  # fmt: skip
    return crops


def write_white_cell_crops(
    image_paths: Sequence[Path], annotation_dir: Path, out: Path, size: int, object_diameter: float, prefix: str = "bccd_"
) -> list[str]:
    """Write the crops of each smear to ``out/images`` and ``out/labels`` as ``<prefix><stem>_<n>.png``;
    return the case names written."""
    cases = []
    for path in image_paths:
        boxes = parse_annotation(annotation_dir / f"{path.stem}.xml")
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for n, (image, mask) in enumerate(white_cell_crops(rgb, boxes, size, object_diameter)):
            case = f"{prefix}{path.stem}_{n}"
            Image.fromarray(image).save(out / "images" / f"{case}.png")
            Image.fromarray(mask).save(out / "labels" / f"{case}.png")
            cases.append(case)
    return cases
