"""Cell instances from a semantic smear mask: which pixels belong to which single cell.

Each class gets the method that suits its cells, picked by the class's name (:func:`cell_kind`):

- red cells touch and overlap, so one connected blob holds several: their pale centres are filled,
  the distance to the background is computed, its h-maxima (scikit-image ``h_maxima``, ``h`` a
  fraction of the cell diameter so that it works at any magnification) seed one cell each, and a
  watershed of the negative distance splits the blob between the seeds;
- a white cell is one instance even when the segmentation shows its nucleus lobes as separate
  blobs: blobs closer than a fraction of a red-cell diameter are merged;
- platelets (and any other class) are connected components; a platelet blob large enough to be a
  clump is split at its necks like the red cells.

Blobs much smaller than the class's smallest plausible cell (fractions of the red-cell area) are
dropped as segmentation noise. Every size is relative to ``cell_diameter`` (px), so the same
parameters work at every magnification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2
from skimage import measure, morphology, segmentation

from medseg_dfl.cells.scale import fill_small_holes

__all__ = [
    "CellInstances",
    "InstanceParams",
    "cell_kind",
    "drop_unsure_platelets",
    "drop_white_cells_without_nucleus",
    "label_instances",
]

_KIND_NAMES = {
    "rbc": ("rbc", "red", "erythrocyte", "red_blood_cell"),
    "wbc": ("wbc", "white", "leukocyte", "leucocyte", "white_blood_cell"),
    "platelet": ("platelet", "plt", "thrombocyte"),
}


def cell_kind(class_name: str) -> str:
    """"rbc", "wbc", "platelet" or "other", from a class name such as "RBC" or "red_blood_cell"."""
    name = class_name.strip().lower()
    for kind, names in _KIND_NAMES.items():
        if any(name == n or name.startswith(n) for n in names):
            return kind
    return "other"


@dataclass(frozen=True)
class InstanceParams:
    """Fractions of the red-cell diameter ``d`` (lengths) or area ``a`` (areas)."""

    h: float = 0.08  # d: a distance maximum this much above its saddle seeds its own red cell
    pallor: float = 0.3  # a: holes up to this size inside a red cell are its pale centre
    min_rbc: float = 0.2  # a: smaller red-cell pieces are noise
    # a: smaller white-cell pieces (a third of it at the border) are not white cells (80 BCCD images,
    # demo model: 90 % of the false white cells were 0.3-1.1 a, 95 % of the true ones above 1.1 a) ...
    min_wbc: float = 0.8
    small_wbc_is_platelet: bool = False  # ... True: they are platelets (small purple objects; on BCCD
    # this turned platelet precision from 0.26 to 0.13: most such pieces are not platelets); False: dropped
    wbc_merge: float = 0.2  # d: white-cell pieces this close are one cell (nucleus lobes)
    min_platelet: float = 0.006  # a: about 2 px at the default 25 px red cell
    platelet_width: float = 0.03  # d: a platelet is at least this thick (half-width); thinner: an edge sliver
    # a: platelet blobs this large may be touching platelets ... (a single platelet is 0.07-0.15 a;
    # real ones are irregular and were cut in two at 0.03: BCCD train, 100 images, platelet P 0.72
    # -> 0.74, count MAE 0.50 -> 0.46 at 0.3; the synthetic smears' counts are the same)
    clump: float = 0.3
    platelet_h: float = 0.1  # d: ... split at necks this much below their distance maxima
    cluster: float = 1.7  # a: larger red-cell regions are several overlapping cells ...
    overlap: float = 0.85  # a: ... of this much visible area each
    seed_scale: float = 24.0  # px: seeds are found with the red cell resampled to this diameter
    # Not a size: platelets whose mean probability of their class (the network's softmax) is below
    # this are dropped (drop_unsure_platelets); 0 turns it off (the default: the synthetic smears need
    # none). The shipped BCCD model's is 0.74, chosen on out-of-fold train.txt predictions with
    # count's mirroring (docs/results/bccd/README.md).
    min_platelet_probability: float = 0.0


@dataclass
class CellInstances:
    """One label map for all classes: ``labels`` 0 background, 1..n cells; ``classes[i]`` is the
    class index of cell ``i`` (``classes[0] == 0``)."""

    labels: np.ndarray  # (H, W) int32
    classes: np.ndarray  # (n + 1,) int
    class_names: list[str]

    @property
    def count(self) -> int:
        return int(self.classes.size - 1)

    def counts(self) -> dict[str, int]:
        """Cells per foreground class name (class 0, the background, is left out)."""
        found = np.bincount(self.classes[1:], minlength=len(self.class_names))
        return {name: int(found[i]) for i, name in enumerate(self.class_names) if i > 0}


def _drop_small(labels: np.ndarray, min_area: float) -> np.ndarray:
    if labels.max() == 0:
        return labels
    areas = np.bincount(labels.ravel())
    keep = areas >= min_area
    keep[0] = False
    return np.where(keep[labels], labels, 0)


def _rbc_seeds(blobs: np.ndarray, diameter: float, params: InstanceParams) -> np.ndarray:
    """Seed labels at full resolution from h-maxima of the distance map at ``seed_scale``."""
    factor = max(1.0, diameter / params.seed_scale)
    small = blobs
    if factor > 1.25:  # h_maxima is the slow step: find seeds on a smaller copy
        shape = tuple(max(1, round(s / factor)) for s in blobs.shape)
        small = ndimage.zoom(blobs.astype(np.float32), [t / s for t, s in zip(shape, blobs.shape, strict=True)],
                             order=1) > 0.5
    distance = ndimage.distance_transform_edt(small)
    step = 4.0  # quarter-pixel integer distances: h_maxima is several times faster on integers
    h = max(1, round(params.h * diameter / (blobs.shape[0] / small.shape[0]) * step))
    seeds = measure.label(morphology.h_maxima(np.rint(distance * step).astype(np.int32), h))
    if small is blobs:
        return seeds
    rows = np.minimum((np.arange(blobs.shape[0]) * small.shape[0]) // blobs.shape[0], small.shape[0] - 1)
    cols = np.minimum((np.arange(blobs.shape[1]) * small.shape[1]) // blobs.shape[1], small.shape[1] - 1)
    return seeds[np.ix_(rows, cols)] * blobs


def _red_cells(mask: np.ndarray, diameter: float, params: InstanceParams) -> np.ndarray:
    area = np.pi * diameter**2 / 4
    blobs = fill_small_holes(mask, params.pallor * area)
    blobs = _drop_small(measure.label(blobs), params.min_rbc * area) > 0
    if not blobs.any():
        return np.zeros(mask.shape, np.int32)
    seeds = _rbc_seeds(blobs, diameter, params)
    distance = ndimage.distance_transform_edt(blobs)
    cells = segmentation.watershed(-distance, seeds, mask=blobs)
    # A blob whose seed was lost in the resampling (a sliver at the border) is still a cell.
    orphans = measure.label(blobs & (cells == 0))
    cells = np.where(orphans > 0, orphans + cells.max(), cells)
    cells = _drop_small(cells, params.min_rbc * area)
    return _split_clusters(_relabel(cells), area, params)


def _split_clusters(cells: np.ndarray, area: float, params: InstanceParams) -> np.ndarray:
    """Split regions several cells large (heavily overlapping cells leave a round blob with a
    single distance maximum) into ``round(area / (overlap * cell area))`` parts by k-means on
    their pixel positions."""
    sizes = np.bincount(cells.ravel())
    big = np.nonzero(sizes[1:] >= params.cluster * area)[0] + 1
    if big.size == 0:
        return cells
    out = cells.copy()
    next_id = int(cells.max()) + 1
    objects = ndimage.find_objects(cells)
    for ident in big:
        box = objects[ident - 1]
        inside = cells[box] == ident
        points = np.argwhere(inside).astype(np.float64)
        parts = max(2, round(sizes[ident] / (params.overlap * area)))
        # k-means on every 7th pixel (fast, same centres), then each pixel to its nearest centre
        centres, _ = kmeans2(points[::7], parts, minit="++", seed=0)
        assignment = ((points[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
        part_labels = np.where(assignment == 0, ident, next_id + assignment - 1)
        region = out[box]
        region[inside] = part_labels
        next_id += parts - 1
    return _relabel(out)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Ids 1..n in the order of the old ids (bincount: ``np.unique`` sorts the whole image)."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lookup = np.zeros(present.size, np.int32)
    lookup[present] = np.arange(1, int(present.sum()) + 1)
    return lookup[labels]


def _white_cells(mask: np.ndarray, diameter: float, params: InstanceParams) -> np.ndarray:
    """Pieces closer than ``wbc_merge * d`` are one cell; the label covers only the mask's pixels."""
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    reach = params.wbc_merge * diameter / 2
    # Only the box around the white-cell pixels (plus the reach) needs the distance map.
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    pad = int(np.ceil(reach)) + 1
    box = (slice(max(rows[0] - pad, 0), rows[-1] + pad + 1), slice(max(cols[0] - pad, 0), cols[-1] + pad + 1))
    groups = np.zeros(mask.shape, np.int32)
    groups[box] = measure.label(ndimage.distance_transform_edt(~mask[box]) <= reach)
    return _relabel(groups * mask)


def _components(mask: np.ndarray, min_area: float) -> np.ndarray:
    return _relabel(_drop_small(measure.label(mask), min_area))


def _platelets(mask: np.ndarray, diameter: float, params: InstanceParams) -> np.ndarray:
    """Connected components; those large enough to be a clump are split at their necks (distance
    watershed, one bounding box at a time: the whole-image h-maxima would cost more than all else)."""
    area = np.pi * diameter**2 / 4
    labels = _components(mask, params.min_platelet * area)
    h = max(1, round(params.platelet_h * diameter * 4))  # quarter pixels, as for red cells
    next_id = int(labels.max()) + 1
    for ident, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = np.pad(labels[box] == ident, 1)
        distance = ndimage.distance_transform_edt(inside)
        if distance.max() < params.platelet_width * diameter:  # a sliver along a cell's edge
            labels[box][inside[1:-1, 1:-1]] = 0
            continue
        if inside.sum() < params.clump * area:
            continue
        seeds = measure.label(morphology.h_maxima(np.rint(distance * 4).astype(np.int32), h) & inside)
        if seeds.max() < 2:
            continue
        parts = segmentation.watershed(-distance, seeds, mask=inside)[1:-1, 1:-1]
        region = labels[box]
        region[parts > 1] = parts[parts > 1] + next_id - 2
        next_id += int(parts.max()) - 1
    return _relabel(labels)


def label_instances(
    mask: np.ndarray,
    class_names: Sequence[str],
    cell_diameter: float,
    params: InstanceParams | None = None,
) -> CellInstances:
    """Split a (H, W) semantic mask (values index ``class_names``; 0 background) into cells.

    ``cell_diameter`` is the typical red-cell diameter in this mask's pixels. Where classes
    overlap after hole filling, white cells win over platelets over red cells (as in the mask).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D label map, got shape {mask.shape}")
    if not cell_diameter > 0:
        raise ValueError(f"cell diameter must be a positive number of pixels, got {cell_diameter}")
    if mask.size and int(mask.max()) >= len(class_names):
        raise ValueError(f"mask has label {int(mask.max())} but only {len(class_names)} classes {list(class_names)}")
    params = params or InstanceParams()
    area = np.pi * cell_diameter**2 / 4
    order = {"rbc": 0, "other": 1, "platelet": 2, "wbc": 3}  # later ones are painted on top
    classes_in_order = sorted(range(1, len(class_names)), key=lambda c: order[cell_kind(class_names[c])])
    labels = np.zeros(mask.shape, np.int32)
    classes: list[int] = [0]
    white = _white_pieces(mask, class_names, cell_diameter, params)
    for index in classes_in_order:
        kind = cell_kind(class_names[index])
        binary = mask == index
        if kind == "rbc":
            cells = _red_cells(binary, cell_diameter, params)
        elif kind == "wbc":
            cells = white.pop(index)
        elif kind == "platelet":
            cells = _platelets(binary | white.pop("small", np.zeros_like(binary)), cell_diameter, params)
        elif kind == "platelet":
            cells = _platelets(binary, cell_diameter, params)
        else:
            cells = _components(binary, params.min_platelet * area)
        found = int(cells.max())
        if found == 0:
            continue
        painted = cells > 0
        labels[painted] = cells[painted] + len(classes) - 1
        classes.extend([index] * found)
    labels, classes_arr = _drop_hidden(labels, np.asarray(classes, dtype=np.int64))
    return CellInstances(labels, classes_arr, list(class_names))


def _white_pieces(mask: np.ndarray, class_names: Sequence[str], diameter: float,
                  params: InstanceParams) -> dict:  # fmt: skip
    """White cells per white-cell class; pieces below ``min_wbc`` go to ``"small"`` (pixels that the
    first platelet class takes over when ``small_wbc_is_platelet``) or are dropped."""
    area = params.min_wbc * np.pi * diameter**2 / 4
    pieces: dict = {}
    small = np.zeros(mask.shape, bool)
    for index, name in enumerate(class_names):
        if index == 0 or cell_kind(name) != "wbc":
            continue
        groups = _white_cells(mask == index, diameter, params)
        kept = _drop_small(groups, area)
        # A white cell cut by the image border may show less of itself: a third of the bar.
        at_border = np.unique(np.concatenate([groups[0], groups[-1], groups[:, 0], groups[:, -1]]))
        partial = _drop_small(np.where(np.isin(groups, at_border[at_border > 0]), groups, 0), area / 3)
        kept = np.where(partial > 0, partial, kept)
        small |= (groups > 0) & (kept == 0)
        pieces[index] = _relabel(kept)
    if params.small_wbc_is_platelet and any(cell_kind(n) == "platelet" for n in class_names[1:]):
        pieces["small"] = small
    return pieces


def drop_white_cells_without_nucleus(cells: CellInstances, image: np.ndarray, dark: float = 0.6,
                                     min_fraction: float = 0.03) -> CellInstances:  # fmt: skip
    """Remove white cells with (almost) no nucleus: fewer than ``min_fraction`` of their pixels have
    a green value below ``dark`` times the slide's background (its 95th percentile). Every stain
    makes nuclei the darkest objects of a smear; on 80 BCCD images every false white cell left
    after the size rule had none such pixels, 95 % of the true ones more than 9 %."""
    green = np.asarray(image, dtype=np.float32)[..., 1]
    if green.shape != cells.labels.shape:
        raise ValueError(f"image {green.shape} and instance map {cells.labels.shape} differ in size")
    white = [i for i in range(1, cells.count + 1) if cell_kind(cells.class_names[cells.classes[i]]) == "wbc"]
    if not white:
        return cells
    is_dark = (green < dark * np.percentile(green, 95)).astype(np.float64)
    fractions = ndimage.mean(is_dark, cells.labels, white)
    pale = np.array([i for i, f in zip(white, np.atleast_1d(fractions), strict=True) if f < min_fraction], int)
    if pale.size == 0:
        return cells
    labels = np.where(np.isin(cells.labels, pale), 0, cells.labels)
    renumbered, classes = _drop_hidden(labels, cells.classes)
    return CellInstances(renumbered, classes, cells.class_names)


def drop_unsure_platelets(cells: CellInstances, probabilities: np.ndarray, min_mean: float) -> CellInstances:
    """Remove platelets whose mean probability of their own class is below ``min_mean``.

    ``probabilities`` is (classes, H, W), indexed like ``cells.class_names``. The network is surer of
    real platelets than of stain debris and the halves of a platelet split in two: on BCCD's train
    images the matched platelets had a median mean probability of 0.82, the unmatched ones 0.64.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.shape != (len(cells.class_names), *cells.labels.shape):
        raise ValueError(f"probabilities {probabilities.shape} do not fit {len(cells.class_names)} classes "
                         f"and the instance map {cells.labels.shape}")  # fmt: skip
    if not 0.0 <= min_mean <= 1.0:
        raise ValueError(f"minimum mean platelet probability must lie in [0, 1], got {min_mean}")
    platelets = [i for i in range(1, cells.count + 1) if cell_kind(cells.class_names[cells.classes[i]]) == "platelet"]
    if not platelets or min_mean == 0.0:
        return cells
    # Each cell's mean of its own class's channel: pick that channel per pixel, then average per label.
    own = np.take_along_axis(probabilities, cells.classes[cells.labels][None], axis=0)[0].astype(np.float64)
    means = np.atleast_1d(ndimage.mean(own, cells.labels, platelets))
    unsure = np.array([i for i, m in zip(platelets, means, strict=True) if m < min_mean], int)
    if unsure.size == 0:
        return cells
    labels = np.where(np.isin(cells.labels, unsure), 0, cells.labels)
    renumbered, classes = _drop_hidden(labels, cells.classes)
    return CellInstances(renumbered, classes, cells.class_names)


def _drop_hidden(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber 1..n after painting (a red cell entirely under a white cell disappears)."""
    present = np.bincount(labels.ravel(), minlength=classes.size) > 0
    present[0] = False
    lookup = np.zeros(classes.size, np.int32)
    lookup[present] = np.arange(1, int(present.sum()) + 1)
    return lookup[labels], np.concatenate([[0], classes[present]])
