"""Typed configuration: the only place that reads YAML.

YAML -> :func:`load_config` -> :class:`Config` (nested dataclasses) -> passed explicitly.
Unknown keys, wrong types and values outside a field's choices are rejected with the full key
path, so a typo is never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medseg_dfl.choices import NETWORK_NAMES, check_overlap
from medseg_dfl.config_help import KEY_HELP
from medseg_dfl.io.atomic import write_text
from medseg_dfl.io.typed_dataclass import build_dataclass
from medseg_dfl.io.yaml_safe import load_yaml_text
from medseg_dfl.losses.registry import resolve_loss

__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "KEY_HELP",
    "LossConfig",
    "NetworkConfig",
    "OptimConfig",
    "TrainConfig",
    "TransformConfig",
    "apply_overrides",
    "check_all_cases",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]


def _choices(*values: str) -> dict[str, tuple[str, ...]]:
    return {"choices": values}


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0


@dataclass
class DataConfig:
    root: str = "sample_data/blood_smear"
    spatial_dims: int = field(default=2, metadata={"choices": (2, 3)})
    modality: str = field(default="microscopy", metadata=_choices("microscopy", "ct", "mr"))
    in_channels: int = 3
    class_names: list[str] = field(default_factory=lambda: ["background", "rbc", "wbc", "platelet"])
    val_fraction: float = 0.2
    fold: int | None = None
    folds: int = 5
    # nnU-Net's fold "all": every case trains (the dataset.json list and val_fraction share too) and
    # none validates; for a final model once a validated run has shown the recipe's score.
    all_cases: bool = False
    cache: str = field(default="memory", metadata=_choices("none", "memory", "disk"))
    cache_dir: str | None = None
    num_workers: int = 0
    # Measured: hides the data wait (13-28 % -> 2-3 % of a step on the smears), but made steps
    # 1.1-1.3x slower where another busy process shared few cores (medseg_dfl/data/prefetch.py).
    prefetch: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class AugmentConfig:
    flip: bool = True
    # Leave out an axis along which the classes sit in a fixed order (the hippocampus head is always
    # anterior to its body): mirroring there swaps their meaning. ``plan`` chooses them from the data.
    flip_axes: list[int] | None = None
    rot90: bool = True
    affine: bool = True
    # The affine step's strength. nnU-Net draws rotations up to 30 degrees and scales 0.7-1.4, each
    # with p 0.2; the lighter defaults here were chosen for short CPU budgets (docs/results).
    affine_prob: float = 0.2
    rotate_degrees: float = 15.0
    scale_fraction: float = 0.1  # scales drawn from 1 - f .. 1 + f
    color_jitter: bool = True
    noise: bool = True
    stain: bool = False
    stain_sigma: float = 0.25  # HED optical densities scaled by U(1 - s, 1 + s) per channel (medseg_dfl.stain)
    low_resolution: bool = False  # nnU-Net's low-resolution simulation and gamma (medseg_dfl.transforms)


@dataclass
class TransformConfig:
    # Training patch in the loaded arrays' axis order: 2D images (H, W), rows first; volumes (i, j, k).
    patch_size: list[int] = field(default_factory=lambda: [128, 128])
    num_samples: int = 2
    class_ratios: list[float] | None = None
    target_spacing: list[float] | None = None
    intensity: str = field(
        default="auto",
        metadata=_choices("auto", "zscore", "zscore_nonzero", "window", "percentile", "rgb_0_1", "ct_zscore"),
    )
    window: list[float] | None = None
    intensity_mean: list[float] | None = None
    intensity_std: list[float] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class NetworkConfig:
    name: str = "UNet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    name: str = "dfl"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = field(default="adamw", metadata=_choices("adamw", "sgd"))
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    scheduler: str = field(default="cosine", metadata=_choices("cosine", "poly", "none"))
    warmup_epochs: int = 0
    poly_power: float = 0.9
    min_lr: float = 0.0
    grad_clip: float | None = 1.0


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 4
    steps_per_epoch: int | None = None
    val_every: int = 1
    amp: bool = True
    compile: bool = False
    # Exponential moving average of the weights, updated after every step (None: off). Validation,
    # best.pt and inference use the average; training continues from the raw weights.
    ema_decay: float | None = None
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    deterministic: bool = True


@dataclass
class InferenceConfig:
    # Sliding-window size, in patch_size's axis order (2D: (H, W)); None = transforms.patch_size.
    roi_size: list[int] | None = None
    sw_batch_size: int = 4
    overlap: float = 0.25
    blend_mode: str = field(default="gaussian", metadata=_choices("gaussian", "constant"))


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


def config_from_dict(values: dict[str, Any] | None) -> Config:
    """Build a validated :class:`Config`; missing keys take their defaults."""
    cfg = build_dataclass(Config, values or {})
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: Config) -> None:
    _check_finite_numbers(config_to_dict(cfg), "")
    _check_sizes_and_name(cfg)
    dims = cfg.data.spatial_dims
    if len(cfg.transforms.patch_size) != dims:
        raise ValueError(f"transforms.patch_size {cfg.transforms.patch_size} must have {dims} values (data.spatial_dims)")
    if cfg.inference.roi_size is not None and len(cfg.inference.roi_size) != dims:
        raise ValueError(f"inference.roi_size {cfg.inference.roi_size} must have {dims} values (data.spatial_dims)")
    if cfg.transforms.target_spacing is not None and len(cfg.transforms.target_spacing) != dims:
        raise ValueError(f"transforms.target_spacing {cfg.transforms.target_spacing} must have {dims} values")
    ratios = cfg.transforms.class_ratios
    if ratios is not None and len(ratios) != cfg.data.num_classes:
        raise ValueError(
            f"transforms.class_ratios has {len(ratios)} values but data.class_names has {cfg.data.num_classes} classes"
        )
    if cfg.data.num_classes < 2:
        raise ValueError(f"data.class_names needs at least 2 classes (background + one), got {cfg.data.class_names}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    flip_axes = cfg.transforms.augment.flip_axes
    if flip_axes is not None and (len(set(flip_axes)) != len(flip_axes) or not all(0 <= a < dims for a in flip_axes)):
        raise ValueError(f"transforms.augment.flip_axes {flip_axes} must be distinct axes in 0..{dims - 1} (data.spatial_dims)")
    if cfg.transforms.augment.stain and (cfg.data.in_channels != 3 or cfg.data.spatial_dims != 2):
        raise ValueError("transforms.augment.stain needs 2D RGB images (data.in_channels 3, data.spatial_dims 2)")
    if cfg.data.fold is not None and not (cfg.data.folds >= 2 and 0 <= cfg.data.fold < cfg.data.folds):
        raise ValueError(f"data.fold must be in 0..data.folds-1 with data.folds >= 2, got {cfg.data.fold} of {cfg.data.folds}")
    check_all_cases(cfg.data)
    check_overlap(cfg.inference.overlap, "inference.overlap")
    for name in ("epochs", "batch_size", "val_every"):
        if getattr(cfg.train, name) < 1:
            raise ValueError(f"train.{name} must be >= 1, got {getattr(cfg.train, name)}")
    if cfg.optim.lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    _check_training(cfg)
    _check_augment(cfg.transforms.augment)
    _check_names(cfg)


def check_all_cases(data: DataConfig) -> None:
    """``ValueError`` when ``data.all_cases`` (every case trains, none validates) meets ``data.fold``
    (validate on a fold): the two ask for different splits."""
    if data.all_cases and data.fold is not None:
        raise ValueError(f"data.all_cases trains on every case and validates on none; it cannot be combined with "
                         f"data.fold (got data.fold {data.fold}): set data.fold to null or data.all_cases to false")  # fmt: skip


def _check_finite_numbers(value: Any, path: str) -> None:
    """No NaN or infinity anywhere (``.nan`` / ``.inf`` in YAML), named by its key (``optim.lr``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite_numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_finite_numbers(item, f"{path}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: must be a finite number, got {value}")


def _check_sizes_and_name(cfg: Config) -> None:
    """Window sizes are positive; the run name is a plain folder name (it becomes ``runs/<name>``)."""
    for key, size in (("transforms.patch_size", cfg.transforms.patch_size), ("inference.roi_size", cfg.inference.roi_size)):
        if size is not None and not all(n >= 1 for n in size):
            raise ValueError(f"{key} {size}: every size must be >= 1 pixel")
    name = cfg.experiment.name
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise ValueError(f"experiment.name {name!r} must be a plain folder name (no '/', '\\', '..' or "
                         "surrounding spaces): the run folder is runs/<name>")  # fmt: skip


def _check_names(cfg: Config) -> None:
    if cfg.network.name.lower() not in {n.lower() for n in NETWORK_NAMES}:
        raise ValueError(f"network.name: {cfg.network.name!r} is not one of {', '.join(NETWORK_NAMES)}")
    _check_plain_values(cfg.network.kwargs, "network.kwargs")
    _check_plain_values(cfg.loss.kwargs, "loss.kwargs")
    resolve_loss(cfg.loss.name, cfg.loss.kwargs)


def _check_plain_values(value: Any, path: str) -> None:
    """Keyword values are data: a MONAI bundle expression (``"$..."``, ``"@ref"``, ``"%file"``) or a
    ``_target_`` is refused, never evaluated or imported."""
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).startswith("_") and str(key).endswith("_"):
                raise ValueError(f"{path}.{key}: bundle keys like {key!r} are not allowed (values are data, not code)")
            _check_plain_values(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain_values(item, f"{path}[{index}]")
    elif isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise ValueError(f"{path}: {value!r} looks like a MONAI bundle expression; config values are data, "
                         "never evaluated")  # fmt: skip


def _check_augment(aug: AugmentConfig) -> None:
    if not 0.0 <= aug.affine_prob <= 1.0:
        raise ValueError(f"transforms.augment.affine_prob must be in [0, 1], got {aug.affine_prob}")
    if not 0.0 <= aug.rotate_degrees <= 180.0:
        raise ValueError(f"transforms.augment.rotate_degrees must be in [0, 180], got {aug.rotate_degrees}")
    if not 0.0 <= aug.scale_fraction < 1.0:
        raise ValueError(f"transforms.augment.scale_fraction must be in [0, 1), got {aug.scale_fraction}")
    if not 0.0 <= aug.stain_sigma < 1.0:
        raise ValueError(f"transforms.augment.stain_sigma must be in [0, 1), got {aug.stain_sigma}")


def _check_training(cfg: Config) -> None:
    optim = cfg.optim
    if not 0.0 <= optim.min_lr <= optim.lr:
        raise ValueError(f"optim.min_lr must be in [0, optim.lr={optim.lr}], got {optim.min_lr}")
    if optim.warmup_epochs < 0:
        raise ValueError(f"optim.warmup_epochs must be >= 0, got {optim.warmup_epochs}")
    if optim.grad_clip is not None and optim.grad_clip <= 0:
        raise ValueError(f"optim.grad_clip must be > 0 or null (no clipping), got {optim.grad_clip}")
    if cfg.train.steps_per_epoch is not None and cfg.train.steps_per_epoch < 1:
        raise ValueError(f"train.steps_per_epoch must be >= 1 or null (one pass), got {cfg.train.steps_per_epoch}")
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        raise ValueError(f"train.ema_decay must be in (0, 1) or null (off), got {cfg.train.ema_decay}")
    if cfg.data.num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    if cfg.inference.sw_batch_size < 1:
        raise ValueError(f"inference.sw_batch_size must be >= 1, got {cfg.inference.sw_batch_size}")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain dict (YAML/JSON/checkpoint safe) of a config."""
    return dataclasses.asdict(cfg)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key.path=value (e.g. train.epochs=1)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"override {item!r} has an empty key")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except ValueError as err:
        raise ValueError(f"override {item!r}: value is {err}") from err
    return key.split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw config mapping."""
    out = dict(values)
    for item in overrides or []:
        keys, value = _parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            child = dict(child) if isinstance(child, dict) else {}
            node[k] = child
            node = child
        node[keys[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (safe loader), apply ``--set`` overrides and validate it."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:  # bounded size and depth, no repeated keys (medseg_dfl.io.yaml_safe)
            loaded = load_yaml_text(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections, got {type(loaded).__name__}")
        values = loaded or {}
    try:
        return config_from_dict(apply_overrides(values, overrides))
    except ValueError as err:
        raise ValueError(f"{_error_source(values, overrides, path)}{err}") from None


def _error_source(values: dict[str, Any], overrides: list[str] | None, path: Path | None) -> str:
    """Who to blame for a config error: ``--set`` when the file alone is valid, else the file."""
    if overrides:
        try:
            config_from_dict(values)
        except ValueError:
            pass
        else:
            return "--set: "
    return f"{path}: " if path is not None else ""


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
