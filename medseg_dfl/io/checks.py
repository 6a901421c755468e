"""Check one image/label pair before anything trains on it, and measure what the fingerprint needs.

Every problem is a :class:`DataError` (a ``ValueError``) with one line ``"<file>: <reason>"``:
unreadable/truncated/non-image file, wrong number of spatial dimensions, a 4D volume (unless
``allow_channels``), NaN/inf intensities, multi-channel or non-integer labels, label values outside
``0..num_classes-1`` (the bad values are listed), and image/label shape or (3D) affine mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg_dfl.io.errors import DataError
from medseg_dfl.io.pairing import CasePair
from medseg_dfl.io.readers import ITK_SUFFIXES, NIFTI_SUFFIXES, file_suffix, is_dicom_dir, load_image

__all__ = ["PERCENTILES", "DataError", "PairStats", "validate_pair"]

PERCENTILES = (0.5, 50.0, 99.5)
_AFFINE_TOLERANCE = 1e-4  # relative to the voxel spacing


@dataclass(frozen=True)
class PairStats:
    """What :func:`validate_pair` measured. Spatial values are in ``load_image`` (MONAI) axis order.

    ``intensity_percentiles[c]`` maps each of :data:`PERCENTILES` to channel ``c``'s value; it, ``mean``
    and ``std`` are over the labelled foreground (label > 0) when there is any (``intensity_region``
    ``"foreground"``, as nnU-Net does), else over all voxels (``"all"``).
    """

    case_id: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray
    channels: int
    class_counts: np.ndarray
    intensity_percentiles: list[dict[float, float]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    intensity_region: str


def _is_volume_file(path: Path) -> bool:
    return is_dicom_dir(path) or file_suffix(path) in NIFTI_SUFFIXES + ITK_SUFFIXES


def _check_dims(image: np.ndarray, spatial: tuple[int, ...], path: Path, spatial_dims: int,
                allow_channels: bool) -> None:
    if image.ndim - 1 != len(spatial):
        raise DataError(path, f"image has {image.ndim - 1} dimensions (shape {tuple(image.shape)}); "
                              f"expected {spatial_dims} spatial dimensions (+ channels)")
    if len(spatial) != spatial_dims:
        raise DataError(path, f"{len(spatial)}D image (spatial shape {spatial}), expected {spatial_dims}D "
                              "(data.spatial_dims)")
    if image.shape[0] > 1 and _is_volume_file(path) and not allow_channels:
        raise DataError(path, f"4D image with shape {(*spatial, image.shape[0])}; expected a {spatial_dims}D "
                              "volume (allow channels to read the last dimension as channels)")


def _check_finite(array: np.ndarray, path: Path, what: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        raise DataError(path, f"{what} has {n_nan} NaN and {int((~finite).sum()) - n_nan} infinite values")


def _label_map(label: np.ndarray, path: Path) -> np.ndarray:
    """The (spatial) label map; identical channels (a grey label saved as RGB) collapse to one."""
    if label.shape[0] > 1 and not all(np.array_equal(label[0], label[c]) for c in range(1, label.shape[0])):
        raise DataError(path, f"label has {label.shape[0]} different channels; expected a single-channel "
                              "label map (one class index per pixel)")
    return label[0]


def _format_values(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if values.size > limit else ''}]"


def _check_label_values(label: np.ndarray, path: Path, num_classes: int) -> None:
    _check_finite(label, path, "label")
    values = np.unique(label)
    fractional = values[values != np.round(values)]
    if fractional.size:
        raise DataError(path, f"label values must be integers (class indices), found {_format_values(fractional)}")
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise DataError(path, f"label values {_format_values(bad)} are outside 0..{num_classes - 1} "
                              f"(num_classes={num_classes})")


def _spacing(affine: np.ndarray, spatial_dims: int) -> tuple[float, ...]:
    return tuple(float(s) for s in np.linalg.norm(affine[:spatial_dims, :spatial_dims], axis=0))


def _check_geometry(image_meta: tuple, label_meta: tuple, pair: CasePair, spatial_dims: int) -> None:
    (img_shape, img_affine), (lab_shape, lab_affine) = image_meta, label_meta
    if img_shape != lab_shape:
        raise DataError(pair.label, f"label shape {lab_shape} does not match image shape {img_shape} "
                                    f"({pair.image})")
    if spatial_dims == 3:
        tolerance = _AFFINE_TOLERANCE * max(_spacing(img_affine, 3))
        if not np.allclose(img_affine, lab_affine, rtol=1e-6, atol=tolerance):
            diff = float(np.abs(img_affine - lab_affine).max())
            raise DataError(pair.label, f"label affine differs from the image's ({pair.image}) by up to "
                                        f"{diff:.4g} (orientation/spacing/origin mismatch)")


def _intensity_stats(image: np.ndarray, label: np.ndarray | None) -> tuple[list, tuple, tuple, str]:
    region = "foreground" if label is not None and (label > 0).any() else "all"
    flat = [image[c][label > 0] if region == "foreground" else image[c].ravel() for c in range(image.shape[0])]
    percentiles = [{q: float(v) for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES), strict=True)}
                   for x in flat]
    return percentiles, tuple(float(x.mean()) for x in flat), tuple(float(x.std()) for x in flat), region


def validate_pair(
    pair: CasePair, num_classes: int, spatial_dims: int, *, allow_channels: bool = False
) -> PairStats:
    """Load ``pair``, check it (see the module docstring) and return its :class:`PairStats`.

    ``allow_channels``: a 4D NIfTI / multi-component ITK volume's extra dimension is read as channels
    instead of being an error (2D images may always have colour channels).
    """
    image = load_image(pair.image)
    spatial = tuple(int(s) for s in image.shape[1:])
    array = image.numpy()
    affine = np.asarray(image.affine, dtype=np.float64)
    _check_dims(array, tuple(int(s) for s in image.meta["spatial_shape"]), pair.image, spatial_dims, allow_channels)
    _check_finite(array, pair.image, "image")
    label_map = None
    if pair.label is not None:
        label = load_image(pair.label)
        if label.ndim != image.ndim:
            raise DataError(pair.label, f"label has shape {tuple(label.shape[1:])}, image {spatial} ({pair.image})")
        label_map = _label_map(label.numpy(), pair.label)
        _check_geometry((spatial, affine), (label_map.shape, np.asarray(label.affine, np.float64)), pair,
                        spatial_dims)
        _check_label_values(label_map, pair.label, num_classes)
        counts = np.bincount(label_map.astype(np.int64).ravel(), minlength=num_classes)
    else:
        counts = np.zeros(num_classes, dtype=np.int64)
    percentiles, mean, std, region = _intensity_stats(array, label_map)
    return PairStats(
        case_id=pair.case_id,
        shape=spatial,
        spacing=_spacing(affine, spatial_dims),
        affine=affine,
        channels=int(array.shape[0]),
        class_counts=counts.astype(np.int64),
        intensity_percentiles=percentiles,
        mean=mean,
        std=std,
        intensity_region=region,
    )
