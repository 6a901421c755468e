"""How long one training step takes on this machine, and the epoch budget that fits a wall clock.

:func:`time_training_step` builds the planned network, loss and optimiser and times a few steps
on random patches of the planned batch (after one warm-up step), :func:`time_validation_case` one
sliding-window pass over an image of the median shape; :func:`time_augmentation` times
the random part of the real training pipeline on a few real cases (the deterministic part is cached
once per run). These isolated timings rank the candidate networks. The chosen config is then timed
in ``train``'s own loop on a few of its cases (:func:`time_training_loop`): the isolated step left
out what the loop adds (the prefetch thread sharing the cores, collation, clipping, the validation
pipeline and metrics), and a hippocampus plan fitted to it ran 1.16x its minutes.
:func:`fit_budget` turns the timings into steps per epoch, epochs and a validation interval.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import Compose, RandomizableTrait

from medseg_dfl.config import Config
from medseg_dfl.data.folds import training_split
from medseg_dfl.engine.checkpoint import save_checkpoint
from medseg_dfl.engine.components import Components, build_components, checkpoint_payload
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.precision import autocast, autocast_dtype, memory_format, to_memory_format
from medseg_dfl.engine.scoring import validate
from medseg_dfl.engine.training import seed_epoch, train_one_epoch
from medseg_dfl.losses.deep_supervision import supervised_loss
from medseg_dfl.losses.registry import loss_from_config
from medseg_dfl.networks import build_network
from medseg_dfl.transforms import build_train_transforms
from medseg_dfl.visualize.curves import plot_training_curves

__all__ = [
    "Budget",
    "StepTiming",
    "fit_budget",
    "time_augmentation",
    "time_training_loop",
    "time_training_step",
    "time_validation_case",
]

MAX_STEPS_PER_EPOCH = 250  # nnU-Net's epoch
MAX_EPOCHS = 1000
VAL_SHARE = 0.25  # validation may take at most this share of the training time
_FORWARD_SHARE = 0.3  # a forward pass (sliding-window validation) ~ a third of a training step
# best.pt is rewritten when validation improves: 12 of 121 epochs (white cells, 15 minutes) and 27 of
# 139 (hippocampus, 30 minutes); last.pt and curves.png every epoch.
_BEST_SHARE = 0.2


@dataclass(frozen=True)
class StepTiming:
    step_s: float  # network + loss + optimiser, one batch
    augment_s: float  # random transforms, one patch
    device: str
    val_case_s: float | None = None  # one validation case (sliding window); None = estimated from step_s
    in_loop: bool = False  # step_s timed in train's loop, augmentation included (augment_s is then 0)
    epoch_s: float = 0.0  # what train writes after each epoch (checkpoints, curves)

    def per_step(self, patches: int) -> float:
        return self.step_s + patches * self.augment_s


def time_training_step(cfg: Config, device: torch.device, steps: int = 3) -> float:
    """Median seconds of one training step of ``cfg``'s network and loss on random patches."""
    torch.manual_seed(0)
    amp = autocast_dtype(device, cfg.train.amp) is not None  # timed in the precision training will use
    fmt = memory_format(device, cfg.data.spatial_dims, amp)
    model = build_network(cfg).to(device, memory_format=fmt).train()
    loss_fn = loss_from_config(cfg).to(device)
    params = [*model.parameters(), *loss_fn.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr)
    batch = cfg.train.batch_size * cfg.transforms.num_samples
    shape = (batch, cfg.data.in_channels, *cfg.transforms.patch_size)
    image = to_memory_format(torch.randn(shape, device=device), fmt)
    label = torch.randint(0, cfg.data.num_classes, (batch, 1, *cfg.transforms.patch_size), device=device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with autocast(device, amp):
            logits = model(image)
        loss = supervised_loss(loss_fn, logits, label)  # as training: deep-supervision heads too
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))  # the first step pays for allocations and kernel selection


def time_validation_case(cfg: Config, device: torch.device, shape: Sequence[float]) -> float:
    """Seconds of one sliding-window pass (as validation runs it) over a random image of ``shape``."""
    model = build_network(cfg).to(device).eval()
    image = torch.randn((1, cfg.data.in_channels, *[max(1, round(s)) for s in shape]), device=device)
    roi = cfg.inference.roi_size or cfg.transforms.patch_size
    times = []
    with torch.no_grad(), autocast(device, autocast_dtype(device, cfg.train.amp) is not None):
        for _ in range(2):
            start = time.perf_counter()
            logits = sliding_window_inference(image, roi, cfg.inference.sw_batch_size, model,
                                              overlap=cfg.inference.overlap, mode=cfg.inference.blend_mode)
            torch.softmax(logits, dim=1).argmax(dim=1)
            times.append(time.perf_counter() - start)
    return min(times[1:])  # the first pass builds the Gaussian weights


def time_augmentation(cfg: Config, items: Sequence[dict], repeats: int = 8) -> float:
    """Mean seconds of the random part of the training pipeline per patch, on real cases. A mean, not
    a median: the costly steps (the affine one, p 0.2-0.36) run on fewer than half of the patches, so
    a median leaves them out (a hippocampus plan timed 2 ms per patch, and its steps took half as long
    again as planned)."""
    pipeline = build_train_transforms(cfg)
    first = pipeline.get_index_of_first(lambda t: isinstance(t, RandomizableTrait))
    if first is None:
        return 0.0
    prefix, suffix = Compose(pipeline.transforms[:first]), Compose(pipeline.transforms[first:])
    suffix.set_random_state(seed=0)
    times = []
    for item in items:
        cached = prefix(dict(item))
        for _ in range(repeats):
            start = time.perf_counter()
            suffix(dict(cached))
            times.append((time.perf_counter() - start) / cfg.transforms.num_samples)
    return float(np.mean(times)) if times else 0.0


def time_training_loop(cfg: Config, device: torch.device, steps: int = 10, val_cases: int = 2) -> StepTiming | None:
    """Seconds per step and per validation case of ``cfg`` in ``train``'s own loop: its components
    (the data pipeline with the prefetch thread, network, loss, clipping, optimiser) built on a few of
    its cases, a warm-up step, then ``steps`` steps; then validation on ``val_cases`` cases, timed
    on its second pass. None when the split has no validation case (the isolated timings are used),
    unless ``data.all_cases``: then only the training loop is timed (nothing validates)."""
    split = training_split(cfg)
    if not split.val_pairs and not cfg.data.all_cases:
        return None
    few = dataclasses.replace(split, train_pairs=split.train_pairs[: max(1, cfg.train.batch_size)],
                              val_pairs=split.val_pairs[:val_cases])  # fmt: skip
    data = cfg.data if cfg.data.cache != "disk" else dataclasses.replace(cfg.data, cache="memory")  # a few cases
    warm = dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, steps_per_epoch=1))
    timed = dataclasses.replace(warm, train=dataclasses.replace(cfg.train, steps_per_epoch=steps))
    torch.manual_seed(cfg.experiment.seed)
    ctx = DistContext()
    parts = build_components(warm, device, ctx, few)
    seed_epoch(warm, 0, parts.train_loader)
    train_one_epoch(parts, warm)  # allocations, kernel choice, the compiled loss
    stats = train_one_epoch(parts, timed)
    val_case_s = _time_validation(timed, parts, device) if parts.val_loader is not None else 0.0
    return StepTiming(stats.seconds / max(stats.steps, 1), 0.0, str(device), val_case_s=val_case_s,
                      in_loop=True, epoch_s=_time_epoch_files(timed, parts))  # fmt: skip


def _time_validation(cfg: Config, parts: Components, device: torch.device) -> float:
    """Seconds per case of ``validate`` over ``parts.val_loader``, on its second pass."""
    seconds = []
    for _ in range(2):  # the first pass builds the window weights and the eval-mode kernels
        start = time.perf_counter()
        validate(parts.shipped, parts.loss_fn, parts.val_loader, cfg, device, parts.ctx, parts.amp)
        seconds.append(time.perf_counter() - start)
    return seconds[-1] / len(parts.val_loader.dataset)


def _time_epoch_files(cfg: Config, parts: Components) -> float:
    """Seconds of what train writes after an epoch: last.pt and curves.png, best.pt in a share of
    the epochs (a white-cell DynUNet's checkpoint is 93 MB: 0.3 s of an 8 s epoch; with
    ``data.all_cases`` every epoch)."""
    row = {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "mean_fg_dice": 0.5, "lr": cfg.optim.lr, "seconds": 1.0,
           **{f"dice_{c}": 0.5 for c in cfg.data.class_names}, **{f"iou_{c}": 0.5 for c in cfg.data.class_names}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        save_checkpoint(Path(folder) / "last.pt", checkpoint_payload(cfg, parts, 1, 0.5))
        saved = time.perf_counter() - start
        start = time.perf_counter()
        plot_training_curves([row, {**row, "epoch": 2}], cfg.data.class_names, Path(folder) / "curves.png")
        plotted = time.perf_counter() - start
    return (1 + (1.0 if cfg.data.all_cases else _BEST_SHARE)) * saved + plotted


@dataclass(frozen=True)
class Budget:
    epochs: int
    steps_per_epoch: int
    val_every: int
    epoch_s: float
    val_s: float
    why: str


def _windows(shape: Sequence[float], roi: Sequence[int], overlap: float) -> int:
    count = 1
    for size, window in zip(shape, roi, strict=True):
        step = max(1, int(window * (1 - overlap)))
        count *= max(1, math.ceil((max(size, window) - window) / step) + 1)
    return count


def fit_budget(
    timing: StepTiming, cfg: Config, *, n_train: int, n_val: int, median_shape: Sequence[float], minutes: float
) -> Budget:
    """Epochs, steps per epoch and validation interval whose estimated run time fits ``minutes``."""
    batch = cfg.train.batch_size
    step = timing.per_step(batch * cfg.transforms.num_samples)
    steps_per_epoch = max(1, min(math.ceil(n_train / batch), MAX_STEPS_PER_EPOCH))
    if timing.val_case_s is not None:
        val_s = n_val * timing.val_case_s
    else:
        windows = _windows(median_shape, cfg.transforms.patch_size, cfg.inference.overlap)
        val_s = n_val * math.ceil(windows / cfg.inference.sw_batch_size) * timing.step_s * _FORWARD_SHARE * (
            cfg.inference.sw_batch_size / max(batch, 1)
        )
    epoch_s = steps_per_epoch * step + timing.epoch_s
    budget = minutes * 60.0
    if budget < epoch_s + val_s:  # not even one pass: fewer steps in the one epoch
        steps_per_epoch = max(1, int((budget - val_s) / step))
        epoch_s = steps_per_epoch * step + timing.epoch_s
    val_every = max(1, math.ceil(val_s / (VAL_SHARE * epoch_s))) if val_s > 0 else 1
    epochs = int(min(MAX_EPOCHS, max(1, budget // (epoch_s + val_s / val_every))))
    val_every = min(val_every, epochs)
    measured = ("in the training loop (augmentation and data included)" if timing.in_loop else
                f"(network {timing.step_s:.2f} s + augmentation {timing.augment_s * 1000:.0f} ms per patch)")  # fmt: skip
    val_how = "timed in the loop" if timing.in_loop else "one case timed" if timing.val_case_s else "estimated"
    validation = f"validation ~{val_s:.0f} s ({val_how}) every {val_every} epochs" if n_val else "no validation cases"
    why = (
        f"--time-budget {minutes:g} min on {timing.device}: {step:.2f} s per step measured {measured}, {steps_per_epoch} steps per epoch "
        f"({epoch_s:.0f} s{' with ' + format(timing.epoch_s, '.1f') + ' s of checkpoint and curves' if timing.epoch_s else ''}), {validation} "
        f"-> {epochs} epochs"
    )
    return Budget(epochs, steps_per_epoch, val_every, epoch_s, val_s, why)
