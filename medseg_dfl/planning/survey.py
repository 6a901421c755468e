"""Read every case of a data folder once and keep what planning needs (its fingerprint).

Per case (:class:`CaseSurvey`): spatial shape and spacing (3D: in the RAS axis order the training
pipeline resamples in), channels, whether the image is 8-bit colour, its minimum, the share of
voxels that are exactly zero, the label values with their voxel counts, whether the label map looks
like an instance mask, and per-channel foreground (label > 0) intensity moments and percentiles, as
nnU-Net's fingerprint has them. Per data set (:class:`DatasetSurvey`): the cases plus what a
Decathlon ``dataset.json`` says (class names, modality names per channel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel.orientations as nio
import numpy as np
from scipy import ndimage

from medseg_dfl.io.dataset_json import dataset_json_path, has_dataset_json, read_dataset_json
from medseg_dfl.io.pairing import CasePair, discover_pairs
from medseg_dfl.io.readers import load_image
from medseg_dfl.progress import ProgressCallback, report

__all__ = ["CaseSurvey", "DatasetSurvey", "survey_dataset"]

# A label map is "instance-like" when it has at least this many foreground values and nearly every
# value is one connected blob (semantic classes are few; cells/nuclei numbered 1..N are many).
INSTANCE_MIN_VALUES = 8
INSTANCE_SINGLE_BLOB_SHARE = 0.9
_INSTANCE_VALUES_CHECKED = 64  # enough to decide; keeps the check fast on masks with 1000s of cells


@dataclass(frozen=True)
class CaseSurvey:
    case_id: str
    image: Path
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    channels: int
    is_8bit: bool
    minimum: float
    zero_share: float  # voxels that are 0 in every channel
    label_counts: dict[int, int]
    instance_like: bool
    fg_count: int
    fg_mean: tuple[float, ...]
    fg_std: tuple[float, ...]
    fg_p005: tuple[float, ...]
    fg_p995: tuple[float, ...]
    # Per foreground class: its centroid in world coordinates (mm; RAS axes for 3D, which are the
    # array axes after Orientationd("RAS")); and the foreground's extent (mm) along each axis.
    class_centroids: dict[int, tuple[float, ...]] = field(default_factory=dict)
    fg_extent: tuple[float, ...] = ()

    @property
    def spatial_dims(self) -> int:
        return len(self.shape)


@dataclass
class DatasetSurvey:
    root: Path
    cases: list[CaseSurvey]
    json_labels: list[str] | None = None
    json_modalities: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def values(self) -> list[int]:
        """Every label value seen in any case, sorted."""
        return sorted({v for c in self.cases for v in c.label_counts})

    def counts(self, num_classes: int) -> np.ndarray:
        total = np.zeros(num_classes, dtype=np.int64)
        for case in self.cases:
            for value, n in case.label_counts.items():
                if 0 <= value < num_classes:
                    total[value] += n
        return total


def _ras_permutation(affine: np.ndarray) -> list[int]:
    """For each RAS axis, the array axis that ``Orientationd("RAS")`` puts there."""
    ornt = nio.io_orientation(np.asarray(affine, dtype=float))
    perm = list(range(3))
    for src, (dst, _flip) in enumerate(ornt):
        if not np.isnan(dst):
            perm[int(dst)] = src
    return perm if sorted(perm) == [0, 1, 2] else [0, 1, 2]


def _geometry(image: Any) -> tuple[tuple[int, ...], tuple[float, ...]]:
    shape = tuple(int(s) for s in image.shape[1:])
    dims = len(shape)
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = tuple(float(round(s, 6)) for s in np.linalg.norm(affine[:dims, :dims], axis=0))
    if dims == 3 and affine.shape == (4, 4):
        perm = _ras_permutation(affine)
        shape, spacing = tuple(shape[p] for p in perm), tuple(spacing[p] for p in perm)
    return shape, spacing


def _is_instance_like(label: np.ndarray, values: Sequence[int]) -> bool:
    foreground = [v for v in values if v > 0]
    if len(foreground) < INSTANCE_MIN_VALUES:
        return False
    checked = foreground[:_INSTANCE_VALUES_CHECKED]
    boxes = ndimage.find_objects(np.where(np.isin(label, checked), label, 0).astype(np.int64))
    single = 0
    for value in checked:
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        if box is not None and ndimage.label(label[box] == value)[1] == 1:
            single += 1
    return single >= INSTANCE_SINGLE_BLOB_SHARE * len(checked)


def _label_map(path: Path) -> np.ndarray:
    label = np.asarray(load_image(path))
    if label.shape[0] > 1 and not all(np.array_equal(label[0], label[c]) for c in range(1, label.shape[0])):
        raise ValueError(f"{path}: label has {label.shape[0]} different channels; expected one class index per voxel")
    array = label[0]
    if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)) or array.min() < 0:
        raise ValueError(f"{path}: label values must be non-negative integers (class indices)")
    return array.astype(np.int64)


def _intensities(image: np.ndarray, foreground: np.ndarray) -> tuple[int, list[tuple[float, ...]]]:
    region = foreground if foreground.any() else np.ones_like(foreground)
    per_channel = [image[c][region].astype(np.float64) for c in range(image.shape[0])]
    moments = [
        tuple(float(x.mean()) for x in per_channel),
        tuple(float(x.std()) for x in per_channel),
        tuple(float(np.percentile(x, 0.5)) for x in per_channel),
        tuple(float(np.percentile(x, 99.5)) for x in per_channel),
    ]
    return int(region.sum()), moments


def _class_positions(label: np.ndarray, affine: Any) -> tuple[dict[int, tuple[float, ...]], tuple[float, ...]]:
    """Class centroids and the foreground's extent in world coordinates (see ``CaseSurvey``)."""
    dims = label.ndim
    matrix = np.asarray(affine, dtype=np.float64)
    linear, offset = (matrix[:dims, :dims], matrix[:dims, -1]) if matrix.shape[0] > dims else (np.eye(dims), 0.0)
    values = [int(v) for v in np.unique(label) if v > 0]
    if not values:
        return {}, ()
    # One pass over the label map for every value (instance masks have thousands of values).
    means = ndimage.center_of_mass(np.ones(label.shape, dtype=np.uint8), label, values)
    centroids = {v: tuple(float(x) for x in linear @ np.asarray(m) + offset) for v, m in zip(values, means, strict=True)}
    points = np.argwhere(label > 0)
    corners = np.array([points.min(axis=0), points.max(axis=0) + 1], dtype=np.float64) @ linear.T
    return centroids, tuple(float(x) for x in np.abs(corners[1] - corners[0]))


def survey_case(pair: CasePair) -> CaseSurvey:
    """Read one image/label pair (``ValueError`` naming the file when it cannot be used)."""
    if pair.label is None:
        raise ValueError(f"{pair.image}: has no label (planning needs labelled cases)")
    image = load_image(pair.image_files)
    shape, spacing = _geometry(image)
    array = np.asarray(image)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{pair.image}: image has NaN or infinite values")
    label = _label_map(pair.label)
    if label.shape != array.shape[1:]:
        raise ValueError(f"{pair.label}: label shape {label.shape} does not match image shape {array.shape[1:]}")
    values, counts = np.unique(label, return_counts=True)
    fg_count, (mean, std, p005, p995) = _intensities(array, label > 0)
    is_8bit = bool(array.min() >= 0 and array.max() <= 255 and np.array_equal(array, np.round(array)))
    centroids, extent = _class_positions(label, getattr(image, "affine", np.eye(label.ndim + 1)))
    return CaseSurvey(
        case_id=pair.case_id, image=Path(pair.image), shape=shape, spacing=spacing, channels=int(array.shape[0]),
        is_8bit=is_8bit, minimum=float(array.min()), zero_share=float((array == 0).all(axis=0).mean()),
        label_counts={int(v): int(n) for v, n in zip(values, counts, strict=True)},
        instance_like=_is_instance_like(label, [int(v) for v in values]),
        fg_count=fg_count, fg_mean=mean, fg_std=std, fg_p005=p005, fg_p995=p995,
        class_centroids=centroids, fg_extent=extent,
    )


def _json_names(value: Any, what: str, where: Path) -> list[str] | None:
    """A Decathlon ``{"0": name, ...}`` (or nnU-Net v2 ``{name: 0, ...}``) mapping as a list by index."""
    if not isinstance(value, dict) or not value:
        return None
    if all(isinstance(v, int) for v in value.values()):  # nnU-Net v2: name -> index
        value = {str(v): k for k, v in value.items()}
    keys = sorted(value, key=lambda k: int(k) if str(k).isdigit() else -1)
    if keys != [str(i) for i in range(len(value))]:
        raise ValueError(f"{where}: '{what}' keys must be 0..{len(value) - 1}, got {sorted(value)}")
    return [str(value[k]) for k in keys]


def _agree(cases: Sequence[CaseSurvey], attribute: str, what: str) -> None:
    """Every case must have the same ``attribute``; else one line naming the first odd case."""
    counts = Counter(getattr(c, attribute) for c in cases)
    if len(counts) == 1:
        return
    usual, n_usual = counts.most_common(1)[0]
    odd = next(c for c in cases if getattr(c, attribute) != usual)
    raise ValueError(
        f"{odd.image}: {getattr(odd, attribute)} {what}, while {n_usual} of the {len(cases)} cases have {usual} "
        "(every case must agree; fix or remove it)"
    )


def survey_dataset(root: str | Path, progress: ProgressCallback | None = None) -> DatasetSurvey:
    """Survey every labelled case under ``root`` (any layout :func:`discover_pairs` reads)."""
    root = Path(root)
    pairs = discover_pairs(root)
    cases, skipped = [], []
    for index, pair in enumerate(pairs):
        try:
            cases.append(survey_case(pair))
        except ValueError as err:  # an unreadable/bad case: planned without it, reported (preprocess lists it too)
            skipped.append(err)
        report(progress, index + 1, len(pairs), pair.case_id)
    if not cases:
        raise skipped[0]
    _agree(cases, "spatial_dims", "spatial dimensions")
    _agree(cases, "channels", "channel(s)")
    survey = DatasetSurvey(root=root, cases=cases, notes=[f"planned without a bad case: {e}" for e in skipped])
    if has_dataset_json(root):
        data = read_dataset_json(root)
        where = dataset_json_path(root)
        survey.json_labels = _json_names(data.get("labels"), "labels", where)
        survey.json_modalities = _json_names(data.get("modality") or data.get("channel_names"), "modality", where)
    return survey
