"""``configs/metadata.json`` of an exported bundle, with the fields of MONAI's bundle specification.

Specification fields: version, changelog, monai/pytorch/numpy versions, required packages (with
medseg-dfl itself: the post-processing and the loss come from it), task, description, authors,
copyright, data classes, and ``network_data_format`` (inputs/outputs: channels, spatial shape, dtype,
value range, channel names). The extra ``medseg_dfl`` section records what MONAI's fields have no
place for: the physical scale the network sees (target spacing, or the native pixel grid), the
intensity normalisation, the loss with its learnt scale (alpha) and adaptive class weights, and the
run the bundle came from.
"""

from __future__ import annotations

import importlib.metadata
import math
from typing import Any

import monai
import numpy as np
import torch

from medseg_dfl.config import Config
from medseg_dfl.losses.registry import loss_from_config
from medseg_dfl.transforms import intensity_mode, resolve_target_spacing

__all__ = ["BUNDLE_VERSION", "META_SCHEMA", "bundle_metadata", "loss_summary", "package_versions"]

BUNDLE_VERSION = "0.1.0"
META_SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
_REQUIRED = ("medseg-dfl", "pytorch-ignite", "nibabel", "pillow", "SimpleITK", "tifffile")
_RGB = ("R", "G", "B")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages an exported bundle needs (those not installed are left out)."""
    found = {name: _version(name) for name in _REQUIRED}
    return {name: v for name, v in found.items() if v is not None}


def loss_summary(cfg: Config, loss_state: dict[str, Any] | None) -> dict[str, Any]:
    """The run's loss by name, its keywords, its scale alpha (learnt or fixed) and ACW weights."""
    summary: dict[str, Any] = {"name": cfg.loss.name, "kwargs": dict(cfg.loss.kwargs)}
    loss = loss_from_config(cfg)
    if loss_state:
        loss.load_state_dict(loss_state, strict=False)
    dfl = getattr(loss, "dfl", loss)  # DiceDualFocalLoss holds its DualFocalLoss as .dfl
    alpha = getattr(dfl, "current_alpha", None)
    if alpha is not None and math.isfinite(alpha):
        summary["alpha"] = float(alpha)
    weights = getattr(dfl, "class_weights", None)
    if weights is not None and hasattr(weights, "weights") and int(weights.num_updates) > 0:
        summary["adaptive_class_weights"] = [round(float(w), 6) for w in weights.weights()]
    return summary


def _channel_def(cfg: Config) -> dict[str, str]:
    if cfg.data.in_channels == 3 and cfg.data.modality == "microscopy":
        return {str(i): name for i, name in enumerate(_RGB)}
    if cfg.data.in_channels == 1:
        return {"0": cfg.data.modality.upper() if cfg.data.modality in ("ct", "mr") else "intensity"}
    return {str(i): f"channel {i}" for i in range(cfg.data.in_channels)}


def _value_range(mode: str) -> list[float]:
    # Window/percentile/RGB scaling clips to [0, 1]; a z-score has no fixed range.
    return [0.0, 1.0] if mode in ("window", "percentile", "rgb_0_1") else []


def _network_data_format(cfg: Config, roi_size: list[int], class_names: list[str]) -> dict[str, Any]:
    mode = intensity_mode(cfg)
    shape = [int(s) for s in roi_size]
    return {
        "inputs": {
            "image": {
                "type": "image",
                "format": "RGB" if _channel_def(cfg).get("0") == "R" else "magnitude",
                "modality": cfg.data.modality,
                "num_channels": cfg.data.in_channels,
                "spatial_shape": shape,
                "dtype": "float32",
                "value_range": _value_range(mode),
                "is_patch_data": True,
                "channel_def": _channel_def(cfg),
            }
        },
        "outputs": {
            "pred": {
                "type": "image",
                "format": "segmentation",
                "num_channels": len(class_names),
                "spatial_shape": shape,
                "dtype": "float32",
                "value_range": [],
                "is_patch_data": True,
                "channel_def": {str(i): name for i, name in enumerate(class_names)},
            }
        },
    }


def _eval_metrics(best_metric: Any) -> dict[str, float]:
    """The run's best validation mean foreground Dice, when it was ever validated."""
    value = None if best_metric is None else float(best_metric)
    return {"val_mean_fg_dice": value} if value is not None and math.isfinite(value) else {}


def bundle_metadata(
    cfg: Config,
    class_names: list[str],
    roi_size: list[int],
    *,
    fingerprint: dict | None = None,
    loss_state: dict[str, Any] | None = None,
    best_metric: float | None = None,
    source: str = "",
) -> dict[str, Any]:
    """The metadata dict of a bundle for a run with config ``cfg`` (see module docstring)."""
    dims = cfg.data.spatial_dims
    spacing = resolve_target_spacing(cfg, fingerprint)
    classes = ", ".join(f"{i}: {name}" for i, name in enumerate(class_names))
    mode = intensity_mode(cfg)
    meta: dict[str, Any] = {
        "schema": META_SCHEMA,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported by medseg-dfl export-bundle from {source or 'a run'}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": package_versions(),
        "name": f"{cfg.experiment.name} (medseg-dfl)",
        "task": f"{dims}D {cfg.data.modality} segmentation of {', '.join(class_names[1:])}",
        "description": (
            f"{cfg.network.name} trained with medseg-dfl (loss {cfg.loss.name}); inference reproduces "
            "`medseg-dfl infer` on the same checkpoint."
        ),
        "authors": "medseg-dfl contributors",
        "copyright": "Copyright (c) medseg-dfl contributors",
        "data_source": cfg.data.root,
        "data_type": "png/tiff" if dims == 2 else "nifti/mha/nrrd",
        "image_classes": f"{cfg.data.in_channels} channel(s) {cfg.data.modality}, intensity: {mode}",
        "label_classes": f"single channel label map, {classes}",
        "pred_classes": f"{len(class_names)} channels (logits), channel i is class i: {classes}",
        "eval_metrics": _eval_metrics(best_metric),
        "intended_use": "Research example; not for diagnostic use.",
        "network_data_format": _network_data_format(cfg, roi_size, class_names),
        "medseg_dfl": {
            "class_names": list(class_names),
            "spatial_dims": dims,
            "scale": {"target_spacing": spacing, "note": "null = the image's own pixel/voxel grid (no resampling)"},
            "intensity": mode,
            "loss": loss_summary(cfg, loss_state),
        },
    }
    return meta
