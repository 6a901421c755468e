"""How large the segmented object is, for models of single-cell crops (white cells): the scale of a
model whose images show one object each rather than a smear of red cells.

A white-cell model learns cells of one size in pixels; another lab's camera or magnification shows
them larger or smaller (segmentation_WBC's Dataset 2 cells are ~2.5x Dataset 1's), and a network
that never saw that size mislabels it. Red cells, the smear models' ruler
(:mod:`medseg_dfl.cells.scale`), are no ruler here: in a white-cell crop they are few, pale or cut
by the border, and the red-cell estimate lands on the white cell in one lab and on the red cells in
another.

The ruler is the object itself. Training records the median equivalent diameter of the largest
foreground component of its label maps (:func:`training_object_scale`). At inference the model is
run at a ladder of scale factors, and the factor at which the object it segments is closest to
that size (in log ratio) is kept (:func:`choose_factor`; the search itself runs the network, so it
lives in :mod:`medseg_dfl.engine.rescale`). A model that segments the wrong thing at the wrong scale
rarely segments it at the training size, which is what makes the search self-correcting; a user
who knows the size passes it (``--cell-diameter``: the object's diameter in pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medseg_dfl.io.readers import load_image

__all__ = [
    "SEARCH_FACTORS",
    "choose_factor",
    "largest_object_diameter",
    "refine_factors",
    "single_object_core_class",
    "training_object_scale",
]

# Coarse ladder of resampling factors (input -> model): 0.25x to 2x in half-octave steps. A factor
# is refined around the best rung by quarter octaves (refine_factors).
SEARCH_FACTORS = tuple(round(2.0 ** (k / 2), 4) for k in range(-4, 3))


def largest_object_diameter(mask: np.ndarray) -> float | None:
    """Equivalent diameter (px) of the largest connected foreground (> 0) component of a label map,
    or None when there is no foreground."""
    labels, count = ndimage.label(np.asarray(mask) > 0)
    if count == 0:
        return None
    areas = np.bincount(labels.ravel())[1:]
    return float(np.sqrt(4.0 * areas.max() / np.pi))


def training_object_scale(label_paths: Sequence[Path], max_images: int = 64) -> dict[str, Any] | None:
    """The checkpoint's ``scale`` entry for a single-object model: the median of
    :func:`largest_object_diameter` over up to ``max_images`` training label maps (evenly spread);
    None when no label map has foreground."""
    paths = list(label_paths)
    if not paths:
        return None
    picked = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(max_images, len(paths))).astype(int))]
    maps = [np.asarray(load_image(p)) for p in picked]
    diameters = [d for d in (largest_object_diameter(m) for m in maps) if d is not None]
    if not diameters:
        return None
    entry: dict[str, Any] = {
        "object_diameter_px": round(float(np.median(diameters)), 3),
        "object_source": f"largest foreground component of {len(diameters)} training label maps",
    }
    core = single_object_core_class(maps)
    if core is not None:
        entry["core_class"] = core
    return entry


def single_object_core_class(label_maps: Sequence[np.ndarray]) -> int | None:
    """When every label map holds exactly one connected foreground object (white-cell crops): the
    class deepest inside it (the largest mean distance to the background; the nucleus), which marks
    the object at inference (:func:`medseg_dfl.engine.postprocess.keep_core_object`). None when a
    map holds no object or several, or the object has a single class."""
    depth: dict[int, list[float]] = {}
    for mask in label_maps:
        mask = np.squeeze(np.asarray(mask))
        if mask.ndim != 2 or ndimage.label(mask > 0)[1] != 1:
            return None
        distance = ndimage.distance_transform_edt(mask > 0)
        for value in np.unique(mask[mask > 0]):
            depth.setdefault(int(value), []).append(float(distance[mask == value].mean()))
    if len(depth) < 2:
        return None
    return max(depth, key=lambda value: float(np.mean(depth[value])))


def choose_factor(diameters: dict[float, float | None], target: float) -> float | None:
    """The factor whose object diameter (measured at the model's scale) is closest to ``target`` in
    log ratio; ties go to the factor nearest 1 (the least resampling). None when no factor found an
    object."""
    found = {f: d for f, d in diameters.items() if d is not None and d > 0}
    if not found:
        return None
    return min(found, key=lambda f: (round(abs(math.log(found[f] / target)), 6), abs(math.log(f))))


def refine_factors(best: float, tried: Sequence[float]) -> list[float]:
    """Quarter-octave neighbours of ``best`` not tried yet (kept within the coarse ladder's range)."""
    low, high = min(SEARCH_FACTORS), max(SEARCH_FACTORS)
    near = (round(best * 2.0 ** -0.25, 4), round(best * 2.0 ** 0.25, 4))
    return [f for f in near if low <= f <= high and all(abs(f - t) > 1e-3 for t in tried)]
