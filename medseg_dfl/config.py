"""Typed configuration: the only place that reads YAML.

YAML -> :func:`load_config` -> :class:`Config` (nested dataclasses) -> passed explicitly.
Unknown keys, wrong types and values outside a field's choices are rejected with the full key
path, so a typo is never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medseg_dfl.choices import LOSS_NAMES, NETWORK_NAMES
from medseg_dfl.io.atomic import write_text
from medseg_dfl.io.yaml_safe import load_yaml_text
from medseg_dfl.losses.registry import check_loss_kwargs

__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "LossConfig",
    "NetworkConfig",
    "OptimConfig",
    "TrainConfig",
    "TransformConfig",
    "apply_overrides",
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
    # Folder with images/ + labels/ (or *_masks files, or a Decathlon dataset.json).
    # Relative paths are resolved against the current working directory.
    root: str = "sample_data/blood_smear"
    spatial_dims: int = field(default=2, metadata={"choices": (2, 3)})
    modality: str = field(default="microscopy", metadata=_choices("microscopy", "ct", "mr"))
    in_channels: int = 3
    class_names: list[str] = field(default_factory=lambda: ["background", "rbc", "wbc", "platelet"])
    # Used when the data folder has no dataset.json "validation" list.
    val_fraction: float = 0.2
    # Cross-validation: validate on fold ``fold`` of ``folds`` (medseg_dfl.data.folds); None = the
    # dataset.json list / val_fraction split above.
    fold: int | None = None
    folds: int = 5
    cache: str = field(default="memory", metadata=_choices("none", "memory", "disk"))
    cache_dir: str | None = None
    num_workers: int = 0
    # With num_workers 0: draw the next batch in a background thread while the step runs
    # (medseg_dfl/data/prefetch.py). Hides the data wait (13-28 % -> 2-3 % of a step on the smears);
    # turn it off when another busy process shares few cores (there it made steps 1.1-1.3x slower).
    prefetch: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class AugmentConfig:
    flip: bool = True
    # Spatial axes (0-based, MONAI's order after loading) that random flips may mirror; None = every
    # axis. Leave out an axis along which the classes sit in a fixed order (the hippocampus head is
    # always anterior to its body): mirroring there swaps their meaning. ``infer --tta`` mirrors
    # only these axes too. ``plan`` chooses them from the data (planning/decisions.py).
    flip_axes: list[int] | None = None
    rot90: bool = True
    affine: bool = True
    color_jitter: bool = True
    noise: bool = True
    # RGB microscopy: HED stain jitter, brightness, gamma, blur and scale jitter of the whole image
    # before its intensity normalisation (medseg_dfl.stain).
    stain: bool = False


@dataclass
class TransformConfig:
    patch_size: list[int] = field(default_factory=lambda: [128, 128])
    # Patches drawn per image per step by RandCropByLabelClassesd.
    num_samples: int = 2
    # Relative probability of centring a patch on each class (len = classes); None = uniform.
    class_ratios: list[float] | None = None
    # 3D only: resample to this spacing (mm); None = the dataset's median spacing.
    target_spacing: list[float] | None = None
    # auto: microscopy -> per-channel z-score, ct -> window, mr -> z-score. zscore_nonzero: per-case
    # z-score over non-zero voxels (zero background stays 0); rgb_0_1: 8-bit colour / 255;
    # ct_zscore: clip to ``window``, then z-score with ``intensity_mean``/``intensity_std`` (nnU-Net CT).
    intensity: str = field(
        default="auto",
        metadata=_choices("auto", "zscore", "zscore_nonzero", "window", "percentile", "rgb_0_1", "ct_zscore"),
    )
    window: list[float] | None = None
    # ct_zscore only: the dataset's foreground mean and std, one value per channel.
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
    # Floor of the cosine/poly schedule (the LR of the last epoch tends to it).
    min_lr: float = 0.0
    grad_clip: float | None = 1.0


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 4
    # None = one pass over the training set per epoch.
    steps_per_epoch: int | None = None
    val_every: int = 1
    amp: bool = True  # only takes effect on CUDA
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    deterministic: bool = True


@dataclass
class InferenceConfig:
    # None = transforms.patch_size.
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


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return _build_dataclass(tp, value, path)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")  # programming error


def _build_dataclass(cls: type, values: dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ValueError(
            f"unknown config key {where}{unknown[0]!s}; allowed keys{' under ' + path if path else ''}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        key_path = f"{path}.{name}" if path else name
        converted = _convert(value, hints[name], key_path)
        choices = fields[name].metadata.get("choices")
        if choices is not None and converted not in choices:
            raise ValueError(f"{key_path}: {converted!r} is not one of {', '.join(map(str, choices))}")
        kwargs[name] = converted
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any] | None) -> Config:
    """Build a validated :class:`Config`; missing keys take their defaults."""
    cfg = _build_dataclass(Config, values or {}, "")
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
    if not 0.0 <= cfg.inference.overlap < 1.0:
        raise ValueError(f"inference.overlap must be in [0, 1), got {cfg.inference.overlap}")
    for name in ("epochs", "batch_size", "val_every"):
        if getattr(cfg.train, name) < 1:
            raise ValueError(f"train.{name} must be >= 1, got {getattr(cfg.train, name)}")
    if cfg.optim.lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    _check_training(cfg)
    _check_names(cfg)


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
    if cfg.loss.name not in LOSS_NAMES:
        raise ValueError(f"loss.name: {cfg.loss.name!r} is not one of {', '.join(LOSS_NAMES)}")
    _check_plain_values(cfg.network.kwargs, "network.kwargs")
    _check_plain_values(cfg.loss.kwargs, "loss.kwargs")
    check_loss_kwargs(cfg.loss.name, cfg.loss.kwargs)


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
