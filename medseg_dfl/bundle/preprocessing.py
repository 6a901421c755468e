"""Write a checkpoint's inference transforms as MONAI bundle config items (``_target_`` dicts).

The items are read off the ``Compose`` that :func:`medseg_dfl.transforms.build_inference_transforms`
builds for the checkpoint, i.e. off the very objects ``medseg-dfl infer`` runs, with every value
they resolved (CT window, target spacing, foreground function, readers). Nothing is derived from
the config a second time, so the bundle cannot drift from ``infer``; a transform this module does
not know is an error naming it, never a silent omission.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    CropForegroundd,
    EnsureChannelFirstd,
    InvertibleTransform,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from medseg_dfl.io.readers import image_readers

__all__ = ["config_value", "needs_inversion", "preprocessing_items"]

_READERS_EXPR = "$image_readers()"  # imported by the bundle: "$from medseg_dfl.io.readers import image_readers"


def config_value(value: Any) -> Any:
    """A JSON value for a transform argument: dtypes and functions become ``$`` expressions."""
    if isinstance(value, torch.dtype):
        return f"$torch.{str(value).removeprefix('torch.')}"
    if isinstance(value, type) and issubclass(value, np.generic):
        return f"$numpy.{np.dtype(value).name}"
    if isinstance(value, np.dtype):
        return f"$numpy.{value.name}"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return [config_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [config_value(v) for v in value]
    if isinstance(value, types.FunctionType):
        if "<" in value.__qualname__:  # lambdas and local functions cannot be imported by name
            raise ValueError(f"cannot write function {value.__qualname__} into a bundle config (not importable)")
        # Needs "$import importlib" in the bundle's imports (a dotted "$import a.b" binds no usable name).
        return f"$importlib.import_module('{value.__module__}').{value.__qualname__}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot write {type(value).__name__} value {value!r} into a bundle config")


def _single(values: Any) -> Any:
    """MONAI dict transforms keep per-key tuples; ours use one value for every key."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if len(set(map(repr, values))) != 1:
        raise ValueError(f"per-key values {values} differ; bundle export expects one value for all keys")
    return values[0]


def _load(t: LoadImaged) -> dict[str, Any]:

    ours = {type(r) for r in image_readers()}
    item: dict[str, Any] = {"_target_": "LoadImaged", "keys": list(t.keys), "image_only": True}
    if any(type(r) in ours for r in t._loader.readers):
        # Our readers (one per suffix: PNG/JPEG, TIFF incl. 16-bit, NIfTI, MHA/NRRD/DICOM): MONAI's
        # default choice depends on which optional packages happen to be installed.
        item["reader"] = _READERS_EXPR
    item["dtype"] = config_value(t._loader.dtype)
    return item


def _channel_first(t: EnsureChannelFirstd) -> dict[str, Any]:
    return {"_target_": "EnsureChannelFirstd", "keys": list(t.keys), "channel_dim": t.adjuster.input_channel_dim}


def _orientation(t: Orientationd) -> dict[str, Any]:
    o = t.ornt_transform
    return {"_target_": "Orientationd", "keys": list(t.keys), "axcodes": o.axcodes, "labels": config_value(o.labels)}


def _crop_foreground(t: CropForegroundd) -> dict[str, Any]:
    c = t.cropper
    return {
        "_target_": "CropForegroundd", "keys": list(t.keys), "source_key": t.source_key,
        "select_fn": config_value(c.select_fn), "channel_indices": config_value(c.channel_indices),
        "margin": config_value(c.margin), "allow_smaller": c.allow_smaller, "k_divisible": config_value(c.k_divisible),
        "mode": config_value(_single(t.mode)), "start_coord_key": t.start_coord_key, "end_coord_key": t.end_coord_key,
    }  # fmt: skip


def _spacing(t: Spacingd) -> dict[str, Any]:
    s = t.spacing_transform
    return {
        "_target_": "Spacingd", "keys": list(t.keys), "pixdim": config_value(s.pixdim), "diagonal": s.diagonal,
        "mode": config_value(list(t.mode)), "padding_mode": config_value(list(t.padding_mode)),
        "align_corners": config_value(list(t.align_corners)), "dtype": config_value(list(t.dtype)),
        "scale_extent": config_value(list(t.scale_extent)), "recompute_affine": s.recompute_affine,
        "ensure_same_shape": t.ensure_same_shape,
    }  # fmt: skip


def _normalize(t: NormalizeIntensityd) -> dict[str, Any]:
    n = t.normalizer
    return {
        "_target_": "NormalizeIntensityd", "keys": list(t.keys), "subtrahend": config_value(n.subtrahend),
        "divisor": config_value(n.divisor), "nonzero": n.nonzero, "channel_wise": n.channel_wise,
        "dtype": config_value(n.dtype),
    }  # fmt: skip


def _scale_range(t: ScaleIntensityRanged) -> dict[str, Any]:
    s = t.scaler
    return {
        "_target_": "ScaleIntensityRanged", "keys": list(t.keys), "a_min": s.a_min, "a_max": s.a_max,
        "b_min": s.b_min, "b_max": s.b_max, "clip": s.clip, "dtype": config_value(s.dtype),
    }  # fmt: skip


def _scale_percentiles(t: ScaleIntensityRangePercentilesd) -> dict[str, Any]:
    s = t.scaler
    return {
        "_target_": "ScaleIntensityRangePercentilesd", "keys": list(t.keys), "lower": s.lower, "upper": s.upper,
        "b_min": s.b_min, "b_max": s.b_max, "clip": s.clip, "relative": s.relative,
        "channel_wise": s.channel_wise, "dtype": config_value(s.dtype),
    }  # fmt: skip


_TRANSLATORS: dict[type, Callable[[Any], dict[str, Any]]] = {
    LoadImaged: _load,
    EnsureChannelFirstd: _channel_first,
    Orientationd: _orientation,
    CropForegroundd: _crop_foreground,
    Spacingd: _spacing,
    NormalizeIntensityd: _normalize,
    ScaleIntensityRanged: _scale_range,
    ScaleIntensityRangePercentilesd: _scale_percentiles,
}


def preprocessing_items(transforms: Any) -> list[dict[str, Any]]:
    """Config items (``{"_target_": ..., ...}``) for each transform of an inference ``Compose``.

    ``ValueError`` naming the transform when one has no bundle translation (e.g. a transform newly
    added to ``medseg_dfl.transforms``: add it to ``_TRANSLATORS`` and to the export test).
    """
    items = []
    for t in transforms.flatten().transforms:
        translate = _TRANSLATORS.get(type(t))
        if translate is None:
            known = ", ".join(k.__name__ for k in _TRANSLATORS)
            raise ValueError(
                f"cannot export the inference transform {type(t).__name__} to a MONAI bundle (known: {known})"
            )
        items.append(translate(t))
    return items


def needs_inversion(transforms: Any) -> bool:
    """Whether the pipeline changes the grid (orientation, crop, spacing): then ``Invertd`` maps back."""
    return any(isinstance(t, InvertibleTransform) for t in transforms.flatten().transforms)
