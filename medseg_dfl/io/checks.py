"""Check one image/label pair before anything trains on it, and measure what the fingerprint needs.

Every problem is a :class:`DataError` (a ``ValueError``) with one line ``"<file>: <reason>"``:
unreadable/truncated/non-image file, wrong number of spatial dimensions, a 4D volume (unless
``allow_channels``), NaN/inf intensities, multi-channel or non-integer labels, label values outside
``0..num_classes-1`` (the bad values are listed), and image/label shape or (3D) affine mismatch.

:func:`check_pairs` runs :func:`validate_pair` over a whole data set for both ``preprocess`` and
``train`` (one set of checks), keeping each result in a JSON cache keyed by the files' path, size
and modification time, so a second run does not read unchanged files again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg_dfl.io.atomic import write_json
from medseg_dfl.io.errors import DataError
from medseg_dfl.io.pairing import CasePair
from medseg_dfl.io.readers import ITK_SUFFIXES, NIFTI_SUFFIXES, file_suffix, is_dicom_dir, load_image

__all__ = ["PERCENTILES", "BadFilesError", "CheckResult", "DataError", "PairStats", "check_pairs", "save_check_cache", "validate_pair"]

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
                              f"volume; to read the last dimension as {image.shape[0]} channels set data.in_channels: "
                              f"{image.shape[0]} (`medseg-dfl plan` does)")


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
        hint = ("; so many values look like instance masks (one number per object): convert them to class maps, "
                "see `medseg-dfl plan`") if values.size > max(8, 2 * num_classes) else ""
        raise DataError(path, f"label values {_format_values(bad)} are outside 0..{num_classes - 1} "
                              f"(num_classes={num_classes}){hint}")


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
    image = load_image(pair.image_files)
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


# --------------------------------------------------------------------------- a whole data set, cached


@dataclass
class CheckResult:
    """What :func:`check_pairs` found: the good pairs (with their stats, same order) and the bad files."""

    good: list[CasePair] = field(default_factory=list)
    stats: list[PairStats] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason), one per bad pair
    n_read: int = 0  # pairs actually read (not answered from the cache)
    records: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # this run's cache entries


class BadFilesError(ValueError):
    """Some pairs failed validation; ``bad`` lists ``(file, reason)`` for each of them."""

    def __init__(self, bad: list[tuple[Path, str]], total: int, hint: str = "") -> None:
        self.bad = bad
        self.summary = f"{len(bad)} of {total} pairs failed validation" + (f"; {hint}" if hint else "")
        shown = "; ".join(f"{path}: {reason}" for path, reason in bad[:3])
        more = f"; ... ({len(bad) - 3} more)" if len(bad) > 3 else ""
        super().__init__(f"{len(bad)} of {total} pairs failed validation ({shown}{more})" + (f"; {hint}" if hint else ""))


def _file_key(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_mtime_ns, stat.st_size]


def _pair_key(pair: CasePair, settings: list[Any]) -> str:
    files = [_file_key(Path(f)) for f in pair.image_files] + ([_file_key(Path(pair.label))] if pair.label else [])
    return json.dumps([files, settings])


def _stats_to_record(stats: PairStats) -> dict[str, Any]:
    record = dataclasses.asdict(stats)
    record["affine"] = np.asarray(stats.affine).tolist()
    record["class_counts"] = [int(c) for c in stats.class_counts]
    record["intensity_percentiles"] = [[[float(q), float(v)] for q, v in p.items()] for p in stats.intensity_percentiles]
    return record


def _stats_from_record(record: dict[str, Any]) -> PairStats:
    values = dict(record)
    values["shape"], values["spacing"] = tuple(values["shape"]), tuple(values["spacing"])
    values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
    values["affine"] = np.asarray(values["affine"], dtype=np.float64)
    values["class_counts"] = np.asarray(values["class_counts"], dtype=np.int64)
    values["intensity_percentiles"] = [{q: v for q, v in p} for p in values["intensity_percentiles"]]
    return PairStats(**values)


def read_check_cache(path: Path | None) -> dict[str, dict[str, Any]]:
    """The cache at ``path`` ({} when there is none or it is damaged: that only costs a re-read)."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _still_current(key: str) -> bool:
    """True when every file of a cache key still has the recorded size and modification time."""
    try:
        files = json.loads(key)[0]
        return all(_file_key(Path(name)) == [str(Path(name).resolve()), mtime, size] for name, mtime, size in files)
    except (OSError, ValueError, TypeError, IndexError):
        return False


def save_check_cache(path: Path, result: CheckResult, *, keep_others: bool = True) -> None:
    """Write ``result``'s entries to the cache at ``path`` (atomically); with ``keep_others`` the
    entries of other data sets that are still current stay, so one cache can serve several runs."""
    old = read_check_cache(path) if keep_others else {}
    merged = {k: v for k, v in old.items() if k not in result.records and _still_current(k)}
    merged.update(result.records)
    write_json(path, merged)


def _check_one(pair: CasePair, num_classes: int, spatial_dims: int, in_channels: int | None,
               allow_channels: bool) -> PairStats:  # fmt: skip
    if pair.label is None:
        raise DataError(pair.image, "has no label")
    stats = validate_pair(pair, num_classes, spatial_dims, allow_channels=allow_channels)
    if in_channels is not None and stats.channels != in_channels:
        raise DataError(pair.image, f"image has {stats.channels} channel(s), data.in_channels is {in_channels}")
    return stats


def check_pairs(
    pairs: Sequence[CasePair],
    num_classes: int,
    spatial_dims: int,
    *,
    in_channels: int | None = None,
    cache: Path | None = None,
    on_pair: Callable[[str, str | None], None] | None = None,
) -> CheckResult:
    """Validate every pair (see :func:`validate_pair`); a pair whose files are unchanged since the
    ``cache`` recorded them is answered from it. ``on_pair(case_id, problem or None)`` after each.

    A 3D volume's fourth dimension is read as channels when ``in_channels`` > 1. Nothing is written:
    :func:`save_check_cache` stores ``result`` when the caller wants it kept.
    """
    allow_channels = spatial_dims == 3 and (in_channels or 1) > 1
    # "2d-rows-first": entries cached when 2D shapes were recorded (W, H) are not reused.
    settings = [num_classes, spatial_dims, in_channels, allow_channels, "2d-rows-first"]
    known = read_check_cache(cache)
    result = CheckResult()
    for pair in pairs:
        problem = None
        try:
            key = _pair_key(pair, settings)
            record = known.get(key)
            if record is None:
                result.n_read += 1
                try:
                    record = {"stats": _stats_to_record(_check_one(pair, num_classes, spatial_dims, in_channels,
                                                                   allow_channels))}  # fmt: skip
                except DataError as err:
                    record = {"bad": [str(err.path or pair.image), err.reason]}
            result.records[key] = record
        except OSError as err:  # vanished or unreadable between discovery and now
            record = {"bad": [str(pair.image), f"cannot read ({err.strerror or err})"]}
        if "bad" in record:
            path, reason = record["bad"]
            result.bad.append((Path(path), reason))
            problem = f"{path}: {reason}"
        else:
            result.good.append(pair)
            result.stats.append(_stats_from_record(record["stats"]))
        if on_pair is not None:
            on_pair(pair.case_id, problem)
    return result
