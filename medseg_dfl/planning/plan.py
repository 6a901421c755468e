"""``plan_experiment``: a complete, explained :class:`~medseg_dfl.config.Config` from a data folder.

The decisions (and the rules behind them) live in :mod:`.decisions` (classes, modality,
normalisation, spacing), :mod:`.topology` (patch, DynUNet kernels/strides, batch), :mod:`.candidates`
(the network timed and chosen for a time budget) and :mod:`.timing` (epochs that fit a time budget);
this module puts them together and records *why* for each key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg_dfl.config import Config, apply_overrides, config_from_dict, config_to_dict
from medseg_dfl.data.datasets import split_items
from medseg_dfl.engine.distributed import resolve_device
from medseg_dfl.planning.candidates import choose_candidate, time_candidates, with_candidate
from medseg_dfl.planning.decisions import (
    class_names_hint,
    decide_affine_strength,
    decide_classes,
    decide_deep_supervision,
    decide_flip_axes,
    decide_modality,
    decide_normalisation,
    decide_target_spacing,
)
from medseg_dfl.planning.survey import DatasetSurvey, survey_dataset
from medseg_dfl.planning.timing import (
    StepTiming,
    fit_budget,
    time_augmentation,
    time_training_loop,
    time_training_step,
    time_validation_case,
)
from medseg_dfl.planning.topology import filters_for, plan_patch_and_batch, pool_and_conv
from medseg_dfl.progress import ProgressCallback

__all__ = ["DEFAULT_LOSS", "LOSS_WHY", "Plan", "plan_experiment"]

DEFAULT_LOSS = "dice-ce"
LOSS_WHY = (
    "dice-ce: level with dice-dfl (Dice + DFL) on the hippocampus at 30 minutes (mean Dice 0.8902 vs 0.8915 "
    "over 3 seeds, inside their spread), with every loss on white cells and with dfl-acw on the synthetic rare "
    "classes, ahead of ce, focal and plain DFL in short runs; dice-dfl or dfl-acw (rare classes) are the DFL "
    "choices (loss.name)"
)
_DEFAULT_EPOCHS = 100
MIN_STEPS = 250  # fewer steps than one nnU-Net epoch in the time budget: plan a smaller patch
_MEMORY_CACHE_LIMIT = 2e9  # bytes of cached (resampled, float32) images kept in memory


@dataclass
class Plan:
    """A planned config, why each key has its value (``reasons["section.key"]``), and warnings."""
    config: Config
    reasons: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    data_dir: Path | None = None


def _default_memory_gb(device: Any) -> tuple[float, str]:

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        return round(0.85 * total, 1), f"85 % of the GPU's {total:.0f} GB"
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = 8.0
    return round(min(8.0, ram / 4), 1), f"a quarter of the {ram:.0f} GB RAM, at most 8 GB (CPU)"


def _median_shape_at(survey: DatasetSurvey, target: list[float] | None) -> list[float]:
    shapes = np.array([c.shape for c in survey.cases], dtype=np.float64)
    if target is None:
        return [float(v) for v in np.median(shapes, axis=0)]
    spacings = np.array([c.spacing for c in survey.cases], dtype=np.float64)
    return [float(v) for v in np.median(shapes * spacings / np.array(target), axis=0)]


def _fmt(values: Any, digits: int = 3) -> str:
    return "x".join(f"{v:.{digits}g}" for v in values)


def _data_section(survey: DatasetSurvey, names: list[str], modality: str, root: str, r: dict) -> dict:
    first = survey.cases[0]
    channels_why = f"{first.channels} channel(s) in every case"
    if survey.json_modalities:
        channels_why += f" ({', '.join(survey.json_modalities)}, from dataset.json)"
    elif first.spatial_dims == 3 and first.channels > 1:
        channels_why += " (4D images: the last axis is read as channels)"
    elif first.channels == 3:
        channels_why += " (RGB)"
    r["data.spatial_dims"] = f"{first.spatial_dims}D images in all {len(survey.cases)} cases"
    r["data.in_channels"] = channels_why
    cached = len(survey.cases) * first.channels * float(np.prod(first.shape)) * 4 * 2
    cache = "memory" if cached <= _MEMORY_CACHE_LIMIT else "none"
    r["data.cache"] = (
        f"the data set is ~{cached / 2**20:.0f} MB as float32: "
        + ("kept in memory" if cache == "memory" else "too big for memory; `medseg-dfl preprocess` caches on disk")
    )
    workers = 0 if (os.cpu_count() or 1) <= 4 else min(4, (os.cpu_count() or 1) // 2)
    r["data.num_workers"] = f"{os.cpu_count()} CPU cores" + (": loading in the main process" if not workers else "")
    return {"root": root, "spatial_dims": first.spatial_dims, "modality": modality, "in_channels": first.channels,
            "class_names": names, "cache": cache, "num_workers": workers}


def _transforms_section(survey: DatasetSurvey, modality: str, patch: list[int], target: list[float] | None,
                        names: list[str], r: dict) -> dict:
    norm = decide_normalisation(survey, modality)
    flip_axes, r["transforms.augment.flip_axes"] = decide_flip_axes(survey, names)
    r["transforms.intensity"] = norm.why
    color = modality != "ct"
    r["transforms.augment.color_jitter"] = (
        "intensity scale/shift/contrast: on (intensities are not calibrated)" if color
        else "off: CT numbers are calibrated Hounsfield units"
    )
    stain = modality == "microscopy" and survey.cases[0].spatial_dims == 2 and survey.cases[0].channels == 3
    r["transforms.augment.stain"] = (
        "on for RGB microscopy: another lab's stain and camera (WBC Dataset 1 -> Dataset 2, 50 cases, 6-minute "
        "plan): cytoplasm Dice 0.59 -> 0.72, nucleus 0.93 -> 0.95; in-domain cost 0.02 / 0.01" if stain
        else "off: RGB microscopy only"
    )
    r["transforms.num_samples"] = "one patch per image per step (the batch holds batch_size patches)"
    r["transforms.class_ratios"] = "null: patches centred on each class equally often (rare classes oversampled)"
    return {"patch_size": patch, "num_samples": 1, "class_ratios": None, "target_spacing": target,
            "intensity": norm.mode, "window": norm.window, "intensity_mean": norm.mean, "intensity_std": norm.std,
            "augment": {"color_jitter": color, "flip_axes": flip_axes, "stain": stain}}


def _network(survey: DatasetSurvey, target: list[float] | None, classes: int, memory_gb: float, device: Any,
             r: dict) -> tuple[dict, list[int], int]:
    spacing = target or [float(v) for v in np.median([c.spacing for c in survey.cases], axis=0)]
    median = _median_shape_at(survey, target)
    base = 32 if device.type == "cuda" else 16
    voxels = float(sum(np.prod(c.shape) for c in survey.cases))
    topology, filters, batch, need, notes = plan_patch_and_batch(
        median, spacing, base_filters=base, in_channels=survey.cases[0].channels, classes=classes,
        memory_bytes=memory_gb * 2**30, dataset_voxels=voxels,
    )
    unit = " at " + _fmt(spacing) + " mm" if target is not None else " pixels"
    r["transforms.patch_size"] = (
        f"median shape {_fmt(median)}{unit} -> patch {_fmt(topology.patch)} (rounded up to multiples of "
        f"{_fmt(topology.divisor)}, the network's downsampling per axis)" + ("; " + "; ".join(notes) if notes else "")
    )
    r["network.name"] = "DynUNet planned as nnU-Net does (kernels and strides from the patch and the spacing)"
    r["network.kwargs.strides"] = (
        f"halve each axis while its feature map stays >= 8 and its spacing within 2x of the finest: "
        f"{topology.poolings} poolings per axis"
    )
    r["network.kwargs.kernel_size"] = "3 per axis once its spacing is within 2x of the finest (1 before)"
    r["network.kwargs.filters"] = (
        f"{base} doubled per stage, capped at {filters[-1] if len(filters) > 1 else base}"
        + (" (nnU-Net's 32 halved on CPU: ~3x faster steps)" if base == 16 else " (nnU-Net)")
    )
    r["network.kwargs.upsample_kernel_size"] = "the strides after the first (DynUNet)"
    r["network.kwargs.norm_name"] = "instance normalisation (nnU-Net)"
    r["network.kwargs.res_block"] = "plain conv blocks (nnU-Net's default U-Net)"
    r["train.batch_size"] = (
        f"largest batch whose step (~{need / 2**30:.2f} GB estimated) fits the {memory_gb:g} GB memory budget, "
        f"at most 5 % of the data set's voxels, at least 2 (nnU-Net)"
    )
    kwargs = {"kernel_size": topology.kernels, "strides": topology.strides,
              "upsample_kernel_size": topology.strides[1:], "filters": filters, "norm_name": "instance",
              "deep_supervision": False, "res_block": False}
    return kwargs, topology.patch, batch


def _base_values(survey: DatasetSurvey, root: str, memory_gb: float, device: Any, r: dict) -> dict:
    classes = decide_classes(survey)
    r["data.class_names"] = classes.why
    modality, why = decide_modality(survey)
    r["data.modality"] = why
    target, r["transforms.target_spacing"] = decide_target_spacing(survey)
    kwargs, patch, batch = _network(survey, target, len(classes.names), memory_gb, device, r)
    r["loss.name"] = LOSS_WHY
    r["train.epochs"] = f"no --time-budget: {_DEFAULT_EPOCHS} epochs of one pass each (nnU-Net trains 1000 x 250 steps)"
    r["inference.sw_batch_size"] = "the training batch (memory is known to fit)"
    r["inference.overlap"] = "0.25: half the windows of nnU-Net's 0.5, cheaper validation"
    r["optim.lr"] = "AdamW 3e-3 with a cosine schedule: the setting our short CPU comparisons were run with"
    return {
        "experiment": {"name": survey.root.name.lower(), "seed": 0},
        "data": _data_section(survey, classes.names, modality, root, r),
        "transforms": _transforms_section(survey, modality, patch, target, classes.names, r),
        "network": {"name": "DynUNet", "kwargs": kwargs},
        "loss": {"name": DEFAULT_LOSS, "kwargs": {}},
        "optim": {"name": "adamw", "lr": 0.003, "scheduler": "cosine", "warmup_epochs": 1},
        "train": {"epochs": _DEFAULT_EPOCHS, "batch_size": batch, "steps_per_epoch": None, "val_every": 5},
        "inference": {"sw_batch_size": min(batch, 4), "overlap": 0.25},
    }, classes.warnings


def _smaller_patch(cfg: Config, survey: DatasetSurvey, factor: float) -> dict | None:
    """Network/patch values for a patch ~``factor`` times the voxels (not below half the median shape)."""
    spacing = cfg.transforms.target_spacing or [1.0] * cfg.data.spatial_dims
    median = _median_shape_at(survey, cfg.transforms.target_spacing)
    patch = list(cfg.transforms.patch_size)
    floor = [max(8, m / 2) for m in median]
    target_voxels = factor * float(np.prod(patch))
    while float(np.prod(patch)) > 1.5 * target_voxels:  # halve until within 1.5x of the target (no tiny trims)
        axis = int(np.argmax([p / f for p, f in zip(patch, floor, strict=True)]))
        if patch[axis] / 2 < floor[axis]:
            break
        patch[axis] //= 2
    if patch == list(cfg.transforms.patch_size):
        return None
    topology = pool_and_conv(spacing, patch)
    base = cfg.network.kwargs["filters"][0]
    return {"transforms": {"patch_size": topology.patch},
            "network": {"name": "DynUNet", "kwargs": {**cfg.network.kwargs, "kernel_size": topology.kernels,
                                                     "strides": topology.strides,
                                                     "upsample_kernel_size": topology.strides[1:],
                                                     "filters": filters_for(topology, base)}}}


def _timed(cfg: Config, items: list[dict], device: Any) -> Any:

    return StepTiming(time_training_step(cfg, device), time_augmentation(cfg, items[:2]), str(device))


def _cheaper(cfg: Config, survey: DatasetSurvey, steps: float, r: dict) -> dict:
    """Too few steps fit the time budget (CPU): a smaller batch (down to 2), then a smaller patch."""
    factor, extra, batch = steps / MIN_STEPS, {}, cfg.train.batch_size
    smaller_batch = max(2, int(batch * factor))
    if smaller_batch < batch:
        extra = {"train": {"batch_size": smaller_batch}, "inference": {"sw_batch_size": min(smaller_batch, 4)}}
        factor *= batch / smaller_batch  # step time ~ patches per step
        r["train.batch_size"] += f"; then {batch} -> {smaller_batch} for more steps in the --time-budget"
    # A smaller patch re-plans DynUNet's topology; another network (--set network.name) keeps its patch.
    patch = _smaller_patch(cfg, survey, factor) if factor < 1 and cfg.network.name == "DynUNet" else None
    if patch is not None:
        old, new = _fmt(cfg.transforms.patch_size), _fmt(patch["transforms"]["patch_size"])
        extra = _merge(extra, patch)
        r["transforms.patch_size"] += f"; then {old} -> {new} for more steps in the --time-budget (not below half the median shape)"
    return extra


def _choose_network(cfg: Config, items: list[dict], minutes: float, device: Any, r: dict) -> tuple[str, StepTiming]:
    """Times the candidate networks (planning.candidates) and picks one; its name and timing."""
    timed = time_candidates(cfg, items, device)
    chosen, r["network.name"] = choose_candidate(timed, minutes, device, cfg.train.batch_size * cfg.transforms.num_samples)
    for key in [k for k in r if k.startswith("network.kwargs.") and k.split(".")[2] not in chosen.kwargs]:
        del r[key]  # a DynUNet reason where another network was chosen
    r.update(chosen.reasons)
    return chosen.name, next(t for c, t in timed if c is chosen)


def _fit_time(cfg: Config, survey: DatasetSurvey, minutes: float, device: Any, r: dict, choose: bool) -> dict:
    """Epochs (and, with ``choose``, the network) that fit ``minutes``; ``cfg`` holds the planned DynUNet
    (or, without ``choose``, the user's network)."""
    train_items, val_items = split_items(cfg)
    name, timing = _choose_network(cfg, train_items, minutes, device, r) if choose else (None, _timed(cfg, train_items, device))
    steps = minutes * 60 / timing.per_step(cfg.train.batch_size)
    extra = _cheaper(cfg, survey, steps, r) if steps < MIN_STEPS else {}
    if extra:  # re-timed with the cheaper steps; the chosen network re-derived from the smaller DynUNet
        r["train.epochs"] = f"{steps:.0f} steps of {timing.per_step(cfg.train.batch_size):.1f} s would fit"
        cfg = config_from_dict(_merge(config_to_dict(cfg), extra))
    cfg = with_candidate(cfg, name) if name else cfg
    if extra:
        timing = _timed(cfg, train_items, device)
    median = _median_shape_at(survey, cfg.transforms.target_spacing)
    timing = _loop_timing(cfg, device, timing, median)
    budget = fit_budget(timing, cfg, n_train=len(train_items), n_val=len(val_items), median_shape=median,
                        minutes=minutes)
    r["train.epochs"] = (f"at first only {r['train.epochs']}, fewer than {MIN_STEPS}; " if extra else "") + budget.why
    r["train.steps_per_epoch"] = f"one pass over the {len(train_items)} training cases (at most 250 steps, nnU-Net)"
    r["train.val_every"] = ("unused: data.all_cases validates nothing" if cfg.data.all_cases
                            else "validation kept to about a quarter of the training time")
    r["optim.warmup_epochs"] = "one warm-up epoch when there are 10 or more, else none"
    network = {"network": {"name": cfg.network.name, "kwargs": cfg.network.kwargs}} if name else {}
    return _merge(_merge(extra, network), {
        "train": {"epochs": budget.epochs, "steps_per_epoch": budget.steps_per_epoch, "val_every": budget.val_every},
        "optim": {"warmup_epochs": 1 if budget.epochs >= 10 else 0},
    })


def _loop_timing(cfg: Config, device: Any, isolated: StepTiming, median: Sequence[float]) -> StepTiming:
    """The chosen config timed in train's own loop (planning.timing.time_training_loop); without a
    validation split, the isolated step and one sliding-window pass over the median shape."""
    loop = time_training_loop(cfg, device)
    if loop is not None:
        return loop
    return dataclasses.replace(isolated, val_case_s=time_validation_case(cfg, device, median))


def _with_deep_supervision(values: dict, reasons: dict, fit: Any) -> dict:
    """``values`` with deep supervision when :func:`decide_deep_supervision` says so; with a time
    budget (``fit``), the epochs re-fitted to the step timed with the extra head's loss."""
    supervised, reasons["network.kwargs.deep_supervision"] = decide_deep_supervision(
        values["data"]["spatial_dims"], values["train"]["epochs"], values["network"]["name"])
    if not supervised:
        return values
    kwargs = {**values["network"]["kwargs"], "deep_supervision": True}  # _merge replaces kwargs whole
    values = _merge(values, {"network": {"kwargs": kwargs}})
    return fit(values, choose=False) if fit is not None else values


def _for_all_cases(values: dict, reasons: dict) -> dict:
    """``values`` for a final model on every case (``data.all_cases``), run beside the validated one."""
    reasons["experiment.name"] = "default run directory: runs/<name>; _all: beside the validated run's"
    reasons["data.all_cases"] = ("--all-cases: every case trains and none validates (nnU-Net's fold 'all'), "
                                 "so the epochs are fitted without validation time")
    return _merge(values, {"data": {"all_cases": True}, "experiment": {"name": values["experiment"]["name"] + "_all"}})


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) and key != "kwargs" else value
    return out


def _sets_network(overrides: list[str] | None) -> bool:
    """Whether ``--set`` chose the network (``network.name``, ``network.kwargs...``): the user's wins."""
    keys = [item.split("=", 1)[0].strip() for item in overrides or []]
    return any(key == "network" or key.startswith("network.") for key in keys)


def _summary(survey: DatasetSurvey, cfg: Config) -> list[str]:
    counts = survey.counts(cfg.data.num_classes)
    shares = ", ".join(f"{n} {c / max(counts.sum(), 1):.1%}" for n, c in zip(cfg.data.class_names, counts, strict=True))
    shapes = np.array([c.shape for c in survey.cases])
    return [
        f"{len(survey.cases)} cases, {cfg.data.spatial_dims}D, {cfg.data.in_channels} channel(s), {cfg.data.modality}",
        f"shapes {_fmt(shapes.min(0))} .. {_fmt(shapes.max(0))} (median {_fmt(np.median(shapes, 0))})",
        f"voxel shares: {shares}",
    ]


def plan_experiment(
    data_dir: str | Path, *, time_budget_min: float | None = None, memory_budget_gb: float | None = None,
    data_root: str | None = None, device: str | None = None, overrides: list[str] | None = None,
    progress: ProgressCallback | None = None, network_candidates: bool = True, all_cases: bool = False,
) -> Plan:
    """Survey ``data_dir`` and plan a config for it (see the package docstring for the rules).

    ``time_budget_min``: fit epochs/steps to this many minutes of training on ``device`` (a few
    steps are timed); ``memory_budget_gb``: what one training step may use (default: 85 % of the GPU,
    else a quarter of the RAM up to 8 GB); ``data_root``: the path written as ``data.root`` (default
    ``data_dir`` as given); ``overrides``: ``key=value`` applied on top (as ``train --set``);
    ``network_candidates``: with a time budget, time the candidate networks of
    :mod:`.candidates` and let its rule choose (not when ``overrides`` set ``network.*``: theirs is timed);
    ``all_cases``: ``data.all_cases`` (every case trains, none validates: nnU-Net's fold "all"), the
    epochs fitted without validation time.
    """

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir}")
    if time_budget_min is not None and time_budget_min <= 0:
        raise ValueError(f"--time-budget must be > 0 minutes, got {time_budget_min}")
    if memory_budget_gb is not None and memory_budget_gb <= 0:
        raise ValueError(f"--memory-budget must be > 0 GB, got {memory_budget_gb}")
    torch_device = resolve_device(device)
    reasons: dict[str, str] = {}
    memory_gb, memory_why = (memory_budget_gb, "--memory-budget") if memory_budget_gb else _default_memory_gb(torch_device)
    survey = survey_dataset(data_dir, progress)
    values, warnings = _base_values(survey, data_root or str(data_dir), memory_gb, torch_device, reasons)
    reasons["train.batch_size"] += f" (budget: {memory_why})"
    values = _for_all_cases(values, reasons) if all_cases else values  # before the timing: no validation
    def fit(values: dict, choose: bool) -> dict:  # timed with the overrides: --set network.name=UNet fits that network
        timed = apply_overrides(config_to_dict(config_from_dict(values)), overrides)
        timed_cfg = config_from_dict(_merge(timed, {"data": {"root": str(data_dir)}}))
        return _merge(values, _fit_time(timed_cfg, survey, time_budget_min, torch_device, reasons, choose))

    if time_budget_min is not None:
        values = fit(values, network_candidates and not _sets_network(overrides))
    strength, reasons["transforms.augment.affine_prob"] = decide_affine_strength(
        values["data"]["spatial_dims"], values["train"]["epochs"])
    values = _merge(values, {"transforms": {"augment": strength}})
    if _sets_network(overrides):  # a network chosen by --set is the user's, heads included
        reasons["network.kwargs.deep_supervision"] = "the network is the one set by --set"
    else:
        values = _with_deep_supervision(values, reasons, fit if time_budget_min is not None else None)
    for item in overrides or []:
        reasons[item.split("=", 1)[0].strip()] = "set by --set"
    cfg = config_from_dict(apply_overrides(config_to_dict(config_from_dict(values)), overrides))
    if survey.json_labels is None and reasons["data.class_names"] != "set by --set":  # numbered, not named
        warnings = [*warnings, class_names_hint(cfg.data.class_names, data_dir)]
    return Plan(config=cfg, reasons=reasons, warnings=survey.notes + warnings, summary=_summary(survey, cfg), data_dir=data_dir)
