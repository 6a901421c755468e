"""Dataset fingerprint (nnU-Net style): what the transforms need to know about a whole dataset.

``compute_fingerprint(stats, cfg)`` reduces the per-pair ``PairStats`` of
``medseg_dfl.io.checks.validate_pair`` to a JSON-safe dict:

- ``modality``, ``spatial_dims``, ``channels``, ``class_names``, ``num_cases``, ``cases``
- ``shapes``/``spacings`` per case (MONAI spatial order; 3D spacings reordered to RAS axes, the
  order the pipelines resample in), ``median_shape``, ``median_spacing``
- ``intensity_percentiles``: per channel, ``{"0.5": .., "50.0": .., "99.5": ..}``, the median over
  cases of each case's percentile (foreground voxels where ``PairStats`` computed them so)
- ``class_counts`` (summed voxel counts) and ``class_frequencies`` (counts / total), aligned with
  ``class_names``.

What the transforms read back from it (median spacing, CT window) is read in
:mod:`medseg_dfl.transforms` (``fingerprint_spacing``, ``fingerprint_window``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel.orientations as nio
import numpy as np

from medseg_dfl.config import Config
from medseg_dfl.io.atomic import write_json

__all__ = [
    "FINGERPRINT_NAME",
    "FINGERPRINT_VERSION",
    "compute_fingerprint",
    "load_fingerprint",
    "save_fingerprint",
]

FINGERPRINT_NAME = "fingerprint.json"
FINGERPRINT_VERSION = 1


def _ras_order(affine: Any, spacing: Sequence[float]) -> list[float]:
    """Spacing reordered to the axes ``Orientationd("RAS")`` produces (oblique: nearest axes)."""
    ornt = nio.io_orientation(np.asarray(affine, dtype=float))
    out = [0.0] * len(spacing)
    for src, (dst, _flip) in enumerate(ornt):
        if math.isnan(dst):  # degenerate axis: keep it where it is
            dst = src
        out[int(dst)] = float(spacing[src])
    return out


def _case_spacing(stat: Any, spatial_dims: int) -> list[float]:
    spacing = [float(s) for s in stat.spacing]
    affine = getattr(stat, "affine", None)
    if spatial_dims == 3 and affine is not None and np.asarray(affine).shape == (4, 4):
        spacing = _ras_order(affine, spacing)
    return [round(s, 6) for s in spacing]  # float32 headers: 0.93 not 0.9299999813


def _percentiles(stats: Sequence[Any]) -> list[dict[str, float]]:
    """Median over cases of each per-channel percentile."""
    per_case = [getattr(s, "intensity_percentiles", None) for s in stats]
    per_case = [p for p in per_case if p is not None]
    if not per_case:
        return []
    first = per_case[0]
    channels = len(first)
    out = []
    for c in range(channels):
        keys = list(first[c].keys())
        out.append({str(k): float(np.median([case[c][k] for case in per_case])) for k in keys})
    return out


def compute_fingerprint(stats: Sequence[Any], cfg: Config) -> dict[str, Any]:
    """Fingerprint of the validated pairs ``stats`` (see the module docstring for the keys)."""
    if not stats:
        raise ValueError("cannot compute a fingerprint of zero cases")
    names = list(cfg.data.class_names)
    counts = np.zeros(len(names), dtype=np.int64)
    for s in stats:
        case_counts = np.asarray(s.class_counts, dtype=np.int64)
        if case_counts.shape != counts.shape:
            raise ValueError(f"{s.case_id}: {case_counts.size} class counts, expected {len(names)} ({names})")
        counts += case_counts
    total = int(counts.sum())
    shapes = [[int(v) for v in s.shape] for s in stats]
    spacings = [_case_spacing(s, cfg.data.spatial_dims) for s in stats]
    return {
        "format_version": FINGERPRINT_VERSION,
        "modality": cfg.data.modality,
        "spatial_dims": cfg.data.spatial_dims,
        "channels": int(stats[0].channels),
        "class_names": names,
        "num_cases": len(stats),
        "cases": [str(s.case_id) for s in stats],
        "shapes": shapes,
        "spacings": spacings,
        "median_shape": [float(v) for v in np.median(np.asarray(shapes, dtype=float), axis=0)],
        "median_spacing": [float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0)],
        "intensity_percentiles": _percentiles(stats),
        "class_counts": [int(c) for c in counts],
        "class_frequencies": [float(c) / total if total else 0.0 for c in counts],
    }


def save_fingerprint(fingerprint: dict[str, Any], path: str | Path) -> Path:
    """Write ``fingerprint`` as JSON atomically (``path`` may be a folder: ``<folder>/fingerprint.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / FINGERPRINT_NAME
    return write_json(path, fingerprint)


def load_fingerprint(path_or_dir: str | Path) -> dict[str, Any] | None:
    """The fingerprint in a file or ``<folder>/fingerprint.json``; None when there is none."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / FINGERPRINT_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable fingerprint ({err})") from err
    if not isinstance(data, dict) or "class_frequencies" not in data:
        raise ValueError(f"{path}: not a fingerprint (no class_frequencies)")
    return data
