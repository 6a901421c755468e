"""Post-processing of network outputs: the one owner of logits -> probabilities -> label map.

``infer`` (:mod:`medseg_dfl.engine.inference`), the rescaled smear path
(:mod:`medseg_dfl.engine.rescale`) and the exported bundles' transforms
(:mod:`medseg_dfl.bundle.transforms`) all call these functions, so a mask is the same bit for bit
whichever of them made it: the softmax, the background fill of regions the foreground crop removed,
the argmax's tie-breaking (the lower class index wins) and nnU-Net's keep-largest-component.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import KeepLargestConnectedComponent
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

__all__ = [
    "background_fill_and_argmax_",
    "keep_core_object",
    "keep_largest_components",
    "label_dtype",
    "labels_from_probabilities",
    "largest_component_classes",
    "softmax_",
]


def softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (0), in place: one volume-sized buffer less than ``torch.softmax``."""
    logits.sub_(logits.amax(dim=0, keepdim=True)).exp_()
    return logits.div_(logits.sum(dim=0, keepdim=True))


def label_dtype(num_classes: int) -> type:
    """uint8 for up to 256 classes, else uint16."""
    return np.uint8 if num_classes <= 256 else np.uint16


def background_fill_and_argmax_(probs: np.ndarray, dtype: type, slabs: int = 8) -> np.ndarray:
    """Argmax of (classes, spatial...) probabilities, slab by slab along the first spatial axis (an
    int64 argmax of a whole large volume would cost 8 bytes per voxel). NumPy: torch's reductions
    over the class axis of a slab are ~10x slower on CPU.

    Regions that the foreground crop removed come back from ``Invertd`` as all-zero probabilities;
    they are background, so class 0 gets the missing mass (in place: saved probabilities sum to 1).
    """
    mask = np.empty(probs.shape[1:], dtype=dtype)
    step = max(1, -(-probs.shape[1] // slabs))
    for start in range(0, probs.shape[1], step):
        slab = probs[:, start : start + step]
        slab[0] += np.clip(1.0 - slab.sum(axis=0), 0.0, None)
        mask[start : start + step] = slab.argmax(axis=0)
    return mask


def largest_component_classes(names: Sequence[str], class_names: Sequence[str]) -> tuple[int, ...]:
    """Class indices of ``names`` (``all`` = every foreground class); ValueError naming an unknown one."""
    if list(names) == ["all"]:
        return tuple(range(1, len(class_names)))
    unknown = [n for n in names if n not in class_names[1:]]
    if unknown:
        raise ValueError(f"keep-largest: {', '.join(unknown)} not among the model's foreground classes "
                         f"({', '.join(class_names[1:])}; or 'all')")  # fmt: skip
    return tuple(class_names.index(n) for n in names)


def keep_largest_components(mask: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """``mask`` with only the largest connected component of each class in ``classes`` (MONAI's
    ``KeepLargestConnectedComponent``, full connectivity); the dropped pieces become background."""
    if not classes:
        return mask
    keep = KeepLargestConnectedComponent(applied_labels=list(classes), independent=True)
    return np.asarray(keep(mask[None])[0], dtype=mask.dtype)


def keep_core_object(mask: np.ndarray, core_class: int) -> np.ndarray:
    """The one object of a single-object image (a white-cell crop), without what touches it.

    Another lab's red cells, pressed against the white cell and coloured like its cytoplasm, come
    out as one foreground blob with it. The blob is split where its width narrows (watershed of the
    distance to the background): the core class (the nucleus) seeds the object, and every
    distance maximum farther than half the core's radius from the core seeds a competitor (a red
    cell's centre); only the core's basin is kept, the rest becomes background. The half radius is
    scale-free: cytoplasm thinner than that stays attached to the nucleus. A mask without the core
    class is returned unchanged.
    """
    core = mask == core_class
    if not core.any():
        return mask
    foreground = mask > 0
    radius = float(np.sqrt(core.sum() / np.pi))
    distance = ndimage.distance_transform_edt(foreground)
    near_core = ndimage.distance_transform_edt(~core) <= 0.5 * radius
    markers = core.astype(np.int32)
    peaks = peak_local_max(distance, min_distance=max(1, int(0.5 * radius)), exclude_border=False)
    peaks = peaks[~near_core[tuple(peaks.T)]] if len(peaks) else peaks
    markers[tuple(peaks.T)] = np.arange(2, len(peaks) + 2)
    basins = watershed(-distance, markers, mask=foreground)
    return np.where(basins == 1, mask, 0).astype(mask.dtype)


def labels_from_probabilities(probs: np.ndarray, num_classes: int, keep_largest: Sequence[int] = ()) -> np.ndarray:
    """The label map of (classes, spatial...) probabilities: background fill (in place), argmax, and
    the largest component of each class in ``keep_largest``."""
    mask = background_fill_and_argmax_(probs, label_dtype(num_classes))
    return keep_largest_components(mask, keep_largest)
