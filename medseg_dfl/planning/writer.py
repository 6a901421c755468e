"""``write_plan``: the planned config as YAML, every key with a comment saying why it has its value.

The text is generated key by key from the :class:`~medseg_dfl.config.Config` dataclasses (so a key
added to the config later is written too), values in YAML flow style; a key the planner decided
gets its reason on the line(s) above it, every other key a short description of what it does.
``load_config`` reads the file back to the same config (tested).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from medseg_dfl.io.atomic import write_text
from medseg_dfl.planning.plan import Plan

__all__ = ["plan_to_yaml", "write_plan"]

_WIDTH = 110
# What each key does, for keys whose value the planner did not reason about.
KEY_HELP = {
    "experiment.name": "default run directory: runs/<name>",
    "experiment.seed": "seeds network init, data split, shuffling and augmentation",
    "data.root": "the data folder (images/+labels/, *_masks files or dataset.json), relative to where you train",
    "data.val_fraction": "used only when the folder has no dataset.json 'validation' list",
    "data.folds": "number of cross-validation folds (used with data.fold)",
    "data.cache_dir": "required for cache: disk on a raw folder",
    "data.prefetch": "num_workers 0: next batch drawn in a thread during the step (off if the cores are shared)",
    "transforms.window": "[low, high] intensity window (window and ct_zscore modes)",
    "transforms.intensity_mean": "ct_zscore: the data set's foreground mean per channel",
    "transforms.intensity_std": "ct_zscore: the data set's foreground std per channel",
    "transforms.augment.flip": "random flips (along transforms.augment.flip_axes)",
    "transforms.augment.flip_axes": "axes random flips and infer --tta mirror; null = every axis",
    "transforms.augment.rot90": "random 90-degree rotations in the first plane (square there only)",
    "transforms.augment.affine": "small random rotation + scaling",
    "transforms.augment.noise": "Gaussian noise",
    "transforms.augment": "random augmentation of training patches",
    "network.kwargs": "keyword arguments of the MONAI network",
    "network.kwargs.upsample_kernel_size": "the strides after the first (DynUNet)",
    "network.kwargs.norm_name": "instance normalisation (nnU-Net)",
    "network.kwargs.deep_supervision": "off: the training loop takes one output",
    "network.kwargs.res_block": "plain conv blocks (nnU-Net's default U-Net)",
    "loss.kwargs": "keyword arguments of the loss (e.g. gamma: 2.0)",
    "optim.name": "adamw | sgd",
    "optim.warmup_epochs": "linear warm-up epochs before the schedule",
    "train.val_every": "validate every N epochs (and always after the last)",
    "optim.weight_decay": "decoupled (AdamW) weight decay",
    "optim.momentum": "SGD only",
    "optim.scheduler": "cosine | poly | none (stepped once per epoch)",
    "optim.poly_power": "poly only",
    "optim.min_lr": "floor of cosine/poly",
    "optim.grad_clip": "max gradient norm; null = no clipping",
    "train.steps_per_epoch": "null = one pass over the training cases",
    "train.amp": "mixed precision: float16 on CUDA, bfloat16 on a CPU with AMX/AVX512-BF16, else float32",
    "train.device": "auto | cpu | cuda (--device overrides)",
    "train.deterministic": "deterministic cuDNN kernels (CPU runs are always reproducible)",
    "inference.roi_size": "sliding-window size; null = transforms.patch_size",
    "inference.blend_mode": "gaussian | constant",
}


@cache
def _field_comments(cls: type) -> dict[str, str]:
    """The comment config.py gives each field of ``cls`` (lines above it, or at the end of its line)."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        match = re.match(r"\s+(\w+):", line)
        if match and above:
            comments[match.group(1)] = " ".join(above)
        elif match and "  # " in line:
            comments[match.group(1)] = line.split("  # ", 1)[1].strip()
        above = []
    return comments


def _help(container: Any, key: str, key_path: str) -> str:
    if key_path in KEY_HELP:
        return KEY_HELP[key_path]
    return _field_comments(type(container)).get(key, "") if dataclasses.is_dataclass(container) else ""


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[: -len("\n...")].strip() if text.endswith("...") else text


def _comment_lines(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, _WIDTH - len(indent) - 2)]


def _emit(value: Any, path: str, depth: int, reasons: dict[str, str], lines: list[str]) -> None:
    indent = "  " * depth
    items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)] if dataclasses.is_dataclass(
        value) else list(value.items())
    for key, item in items:
        key_path = f"{path}.{key}" if path else key
        reason = reasons.get(key_path)
        if reason:
            lines += _comment_lines(reason, indent)
        nested = dataclasses.is_dataclass(item) or (isinstance(item, dict) and item and key_path != "loss.kwargs")
        help_text = "" if reason else _help(value, key, key_path)
        suffix = f"  # {help_text}" if help_text else ""
        if nested:
            lines.append(f"{indent}{key}:{suffix}")
            _emit(item, key_path, depth + 1, reasons, lines)
        else:
            lines.append(f"{indent}{key}: {_flow(item)}{suffix}")
        if depth == 0:
            lines.append("")


def plan_to_yaml(plan: Plan, command: str | None = None) -> str:
    """The commented YAML text of ``plan`` (``command``: how it was made, for the header)."""
    header = ["medseg-dfl plan: a config planned from the data; every comment says why a value was chosen."]
    if command:
        header.append(f"made by: {command}")
    header += [f"data: {line}" for line in plan.summary]
    header += [f"WARNING: {w}" for w in plan.warnings]
    header.append("train: medseg-dfl train THIS_FILE [--set key=value ...]; unknown keys and wrong types are errors.")
    lines = [f"# {wrapped}" for text in header for wrapped in textwrap.wrap(text, _WIDTH - 2)] + [""]
    _emit(plan.config, "", 0, plan.reasons, lines)
    return "\n".join(lines).rstrip() + "\n"


def write_plan(plan: Plan, path: str | Path, *, command: str | None = None, overwrite: bool = False) -> Path:
    """Write :func:`plan_to_yaml` to ``path`` atomically; an existing file only with ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:  # checked first too, so the refusal names the option to use
        raise FileExistsError(f"{path} exists; choose another --output or pass --overwrite")
    return write_text(path, plan_to_yaml(plan, command), overwrite=overwrite)
