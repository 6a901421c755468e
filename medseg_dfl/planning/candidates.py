"""Candidate networks timed on the user's device, and the rule that picks one for a time budget.

On a CPU budget the number of patches seen may matter more than the topology (issue 21), so with
``--time-budget`` the planner times a few networks derived from the planned DynUNet on the planned
batch and patch (:func:`time_candidates`) and picks one (:func:`choose_candidate`):

- ``dynunet``: the plan as is (nnU-Net's plain U-Net);
- ``dynunet-resenc``: residual encoder blocks (MONAI's ``res_block``; the decoder stays plain, as in
  nnU-Net's ResEnc presets);
- ``dynunet-narrow`` / ``dynunet-wide``: the filters halved (at least 8) / doubled (nnU-Net's cap);
- ``unet-strided``: MONAI's UNet with the same feature maps, its first convolution already strided
  (no full-resolution stage) and 2 residual units; strides are the DynUNet's per axis, so the same
  patch divides.

The rule (:func:`pick_network`, pure: step seconds, patches per step, minutes, device type) keeps
nnU-Net's choice on a GPU or wherever the plain network sees a GPU-like number of patches; on a CPU
budget where it sees fewer than ``CPU_MIN_PATCHES`` it takes the first of ``CPU_PREFERENCE`` whose
step costs at most ``MAX_SLOWDOWN`` times the plain one's. Its constants are set below, in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from medseg_dfl.config import Config
from medseg_dfl.planning.timing import StepTiming, time_augmentation, time_training_step
from medseg_dfl.planning.topology import MAX_FILTERS

__all__ = [
    "CPU_MIN_PATCHES", "CPU_PREFERENCE", "GPU_LIKE_PATCHES", "MAX_SLOWDOWN", "PLAIN", "Candidate",
    "candidate_networks", "choose_candidate", "patches_seen", "pick_network", "time_candidates", "with_candidate",
]

# The rule's constants: the one place to set them, from equal-budget trainings of the candidates
# (benchmarks/equal_budget.py; docs/results/nnunet_ingredients.md). On the hippocampus at 5 CPU
# minutes the plain DynUNet won (0.880) over resenc (0.877) and the strided UNet (0.876, 3.5x the
# patches); on white cells at 6 minutes the strided UNet edged ahead (0.9505 vs 0.9485). No candidate
# wins on both: CPU_PREFERENCE is empty, so the plain DynUNet is kept everywhere, while every
# candidate's step time is still measured and written into the config comment.
GPU_LIKE_PATCHES = 1000 * 250 * 2  # nnU-Net's training: 1000 epochs x 250 steps x batch 2 patches
CPU_MIN_PATCHES = 100_000  # the plain network seeing fewer patches than this in the budget: try CPU_PREFERENCE
CPU_PREFERENCE: tuple[str, ...] = ()  # candidate names tried in order there, e.g. ("unet-strided",)
MAX_SLOWDOWN = 1.0  # a preferred candidate's step may cost at most this times the plain one's (1.0: never costlier)

PLAIN = "dynunet"
_MIN_FILTERS = 8
# Timed steps per candidate after one warm-up step: the plain network as many as the plan's own timing
# (its time fits the budget), the others one fewer to keep the plan cheap (hippocampus on a 2-core CPU:
# all five cost ~8x the plain one's timing, the wide one alone ~3.6x).
_CANDIDATE_STEPS = 2


@dataclass(frozen=True)
class Candidate:
    """A network to time: ``network``/``kwargs`` replace ``network.name``/``network.kwargs``;
    ``reasons`` are the config comments of the kwargs it changes (``"network.kwargs.KEY"``)."""
    name: str
    what: str
    network: str
    kwargs: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)


def _unet_strides(dynunet_strides: Sequence[Sequence[int]]) -> list[Any]:
    """The DynUNet's downsampling strides (its first stage has stride 1): 2 where all axes halve, else per axis."""
    return [2 if all(s == 2 for s in stride) else [int(s) for s in stride] for stride in dynunet_strides[1:]]


def candidate_networks(cfg: Config) -> list[Candidate]:
    """The candidates derived from ``cfg``'s planned DynUNet (see the module docstring)."""
    if cfg.network.name.lower() != "dynunet":
        raise ValueError(f"candidates are derived from a planned DynUNet, not {cfg.network.name}")
    kwargs = dict(cfg.network.kwargs)
    filters = [int(f) for f in kwargs["filters"]]
    cap = MAX_FILTERS[cfg.data.spatial_dims]
    narrow = [max(_MIN_FILTERS, f // 2) for f in filters]
    wide = [min(cap, 2 * f) for f in filters]
    strides = _unet_strides(kwargs["strides"])
    return [
        Candidate(PLAIN, "nnU-Net's plain DynUNet, as planned", "DynUNet", kwargs),
        Candidate("dynunet-resenc", "residual encoder blocks (nnU-Net's ResEnc presets)", "DynUNet",
                  {**kwargs, "res_block": True},
                  {"network.kwargs.res_block": "residual encoder blocks (MONAI res_block; the decoder stays plain)"}),
        Candidate("dynunet-narrow", f"filters halved (at least {_MIN_FILTERS})", "DynUNet", {**kwargs, "filters": narrow},
                  {"network.kwargs.filters": f"the planned DynUNet's filters halved, at least {_MIN_FILTERS}"}),
        Candidate("dynunet-wide", f"filters doubled (at most {cap}, nnU-Net)", "DynUNet", {**kwargs, "filters": wide},
                  {"network.kwargs.filters": f"the planned DynUNet's filters doubled, at most {cap} (nnU-Net)"}),
        Candidate("unet-strided", "MONAI UNet, strided first stage, 2 residual units", "UNet",
                  {"channels": filters, "strides": strides, "num_res_units": 2},
                  {"network.kwargs.channels": "the planned DynUNet's filters",
                   "network.kwargs.strides": "the planned DynUNet's downsampling per axis (the same patch divides), "
                                             "the first convolution already strided",
                   "network.kwargs.num_res_units": "2 residual units per stage (MONAI UNet)"}),
    ]


def with_candidate(cfg: Config, name: str) -> Config:
    """``cfg`` (a planned DynUNet) with the network of the candidate called ``name``."""
    by_name = {c.name: c for c in candidate_networks(cfg)}
    if name not in by_name:
        raise ValueError(f"no network candidate {name!r}; candidates: {', '.join(by_name)}")
    chosen = by_name[name]
    network = dataclasses.replace(cfg.network, name=chosen.network, kwargs=dict(chosen.kwargs))
    return dataclasses.replace(cfg, network=network)


def time_candidates(cfg: Config, items: Sequence[dict], device: torch.device) -> list[tuple[Candidate, StepTiming]]:
    """Each candidate's training step timed on ``cfg``'s batch and patch; the augmentation (the same
    pipeline for all) is timed once on ``items[:2]``."""
    augment_s = time_augmentation(cfg, items[:2])
    timed = []
    for c in candidate_networks(cfg):
        candidate_cfg = with_candidate(cfg, c.name)
        step_s = time_training_step(candidate_cfg, device) if c.name == PLAIN else time_training_step(
            candidate_cfg, device, steps=_CANDIDATE_STEPS)
        timed.append((c, StepTiming(step_s, augment_s, str(device))))
    return timed


def patches_seen(step_s: float, patches_per_step: int, minutes: float) -> float:
    """Training patches that fit ``minutes`` at ``step_s`` seconds per step (validation left out)."""
    return minutes * 60.0 / step_s * patches_per_step


def pick_network(step_s: Mapping[str, float], patches_per_step: int, minutes: float, device_type: str) -> tuple[str, str]:
    """(candidate name, because ...): the rule, from seconds per training step by candidate name
    (``PLAIN`` among them). Reads the module's constants at each call."""
    plain = patches_seen(step_s[PLAIN], patches_per_step, minutes)
    seen = f"the plain DynUNet sees ~{plain:,.0f} patches in {minutes:g} min"
    if device_type == "cuda":
        return PLAIN, "a GPU budget: nnU-Net's choice stays"
    if plain >= GPU_LIKE_PATCHES:
        return PLAIN, f"{seen}, >= {GPU_LIKE_PATCHES:,} (nnU-Net's 1000 epochs x 250 steps x batch 2): nnU-Net's choice stays"
    if plain >= CPU_MIN_PATCHES:
        return PLAIN, f"{seen}, >= {CPU_MIN_PATCHES:,}: nnU-Net's choice stays"
    if not CPU_PREFERENCE:
        return PLAIN, (f"{seen}, < {CPU_MIN_PATCHES:,}, but no cheaper candidate won on both data sets measured at "
                       "equal CPU minutes (unet-strided: -0.004 Dice on the hippocampus, +0.002 on white cells; "
                       "docs/results/nnunet_ingredients.md)")
    for name in CPU_PREFERENCE:
        if name in step_s and step_s[name] <= MAX_SLOWDOWN * step_s[PLAIN]:
            ratio = step_s[name] / step_s[PLAIN]
            return name, (f"{seen}, < {CPU_MIN_PATCHES:,}: {name} is the first of the CPU preference "
                          f"({', '.join(CPU_PREFERENCE)}) whose step costs at most {MAX_SLOWDOWN:g}x the plain one's "
                          f"({ratio:.2f}x: ~{patches_seen(step_s[name], patches_per_step, minutes):,.0f} patches)")
    return PLAIN, (f"{seen}, < {CPU_MIN_PATCHES:,}, but no network of the CPU preference ({', '.join(CPU_PREFERENCE)}) "
                   f"costs at most {MAX_SLOWDOWN:g}x the plain one's step")


def choose_candidate(timed: Sequence[tuple[Candidate, StepTiming]], minutes: float, device: torch.device | str,
                     patches_per_step: int) -> tuple[Candidate, str]:
    """The candidate :func:`pick_network` picks from the timed steps (augmentation included: what the
    budget pays) and the config comment: every candidate's measured network step, then why."""
    device_type = torch.device(device).type
    per_step = {c.name: t.per_step(patches_per_step) for c, t in timed}
    name, because = pick_network(per_step, patches_per_step, minutes, device_type)
    times = ", ".join(f"{c.name} {t.step_s:.2f} s" for c, t in timed)
    augment_ms = 1000 * timed[0][1].augment_s if timed else 0.0
    why = (f"timed on {device_type} ({patches_per_step} patches per step): {times} per step "
           f"(+ augmentation {augment_ms:.0f} ms per patch); chose {name} because {because}")
    return next(c for c, _ in timed if c.name == name), why
