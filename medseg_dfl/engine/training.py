"""``train(cfg, run_dir)``: the epoch loop, and what a run writes to its directory.

Determinism: every epoch starts by reseeding torch/numpy/random, the MONAI random transforms and
the samplers from (seed, epoch, rank), so epoch k does the same thing whether the run got there in
one go or was killed and resumed from ``last.pt`` (exact on CPU).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data.utils import set_rnd

from medseg_dfl.config import Config, save_config
from medseg_dfl.data.folds import Split, training_pairs, training_split, write_split
from medseg_dfl.data.prefetch import prefetched
from medseg_dfl.engine.checkpoint import save_checkpoint
from medseg_dfl.engine.components import Components, build_components, checkpoint_payload, restore_components
from medseg_dfl.engine.distributed import (
    DistContext,
    all_reduce_sum,
    average_gradients,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    resolve_device,
)
from medseg_dfl.engine.input_check import check_training_data
from medseg_dfl.engine.optim import lr_factor
from medseg_dfl.engine.output_claims import exclusive_folder
from medseg_dfl.engine.precision import autocast, to_memory_format
from medseg_dfl.engine.records import close_run_log, open_run_log, write_metrics
from medseg_dfl.engine.run_folder import RunState, resume_state, shared_run_dir
from medseg_dfl.engine.scoring import ValidationResult, plain_tensor, validate
from medseg_dfl.io.atomic import remove_stale_temps
from medseg_dfl.losses.deep_supervision import supervised_loss
from medseg_dfl.networks import check_input_size
from medseg_dfl.progress import ProgressCallback, report
from medseg_dfl.visualize.curves import plot_training_curves

__all__ = ["EpochStats", "TrainResult", "default_run_dir", "seed_epoch", "train", "train_one_epoch"]


@dataclass
class TrainResult:
    run_dir: Path
    best_metric: float  # best mean foreground validation Dice (NaN if never validated, as with data.all_cases)
    best_epoch: int | None  # the epoch best.pt holds (data.all_cases: the last epoch)
    epochs_run: int  # epochs completed in total (including those before a resume)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.csv
    rank: int = 0  # this process's rank under torchrun (every rank returns the same numbers)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason) left out by skip_bad
    split: Split | None = None  # the cases that trained and validated (as split.json records)


@dataclass
class EpochStats:
    loss: float  # mean training loss over steps (and ranks)
    steps: int
    seconds: float
    data_seconds: float  # time spent waiting for the data loader


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / cfg.experiment.name


def seed_epoch(cfg: Config, epoch: int, loader: Any, rank: int = 0) -> None:
    """Reseed every random source that epoch ``epoch`` (0-based) draws from."""
    seed = (cfg.experiment.seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**31 - 1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    set_rnd(loader.dataset, seed)  # MONAI random transforms (workers reseed from torch's seed)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)  # DistributedSampler: shuffles from its own (seed, epoch)
    for generator in (getattr(loader, "generator", None), getattr(sampler, "generator", None)):
        if isinstance(generator, torch.Generator):
            generator.manual_seed(seed)
    if getattr(loader, "persistent_workers", False) and getattr(loader, "_iterator", None) is not None:
        # Persistent workers would carry their transforms' random state over from the previous
        # epoch, which a resumed run cannot reproduce: start fresh workers, seeded from the
        # generator reseeded above (PyTorch has no public call for this).
        loader._iterator = None


def _batches(loader: Any, steps: int | None) -> Iterator[Any]:
    """One pass over ``loader``, or exactly ``steps`` batches (cycling the loader if needed)."""
    done = 0
    while True:
        for batch in loader:
            yield batch
            done += 1
            if steps is not None and done >= steps:
                return
        if steps is None or done == 0:
            return


def _train_step(parts: Components, cfg: Config, batch: dict[str, Any]) -> torch.Tensor:
    image = plain_tensor(batch["image"]).to(parts.device, non_blocking=True)
    image = to_memory_format(image, parts.memory_format)
    label = plain_tensor(batch["label"]).to(parts.device, non_blocking=True).long()
    with autocast(parts.device, parts.amp):
        logits = parts.forward(image)
    loss = supervised_loss(parts.loss_fn, logits, label)  # one output, or deep-supervision heads
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    average_gradients(parts.loss_params, parts.ctx)  # DDP averages only the network's gradients
    if cfg.optim.grad_clip is not None:
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.params, cfg.optim.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.update_average()
    return loss.detach()


def _batch_files(batch: dict[str, Any], loader: Any) -> str:
    """The image files a batch came from (for an error message), as ``a.png, b.png``: its cases'
    entries in the loader's item list (MONAI datasets keep it as ``.data``), else the image meta."""
    ids = batch.get("case_id") or []
    ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
    items = getattr(getattr(loader, "dataset", None), "data", None) or []
    files = {str(item.get("case_id")): str(item.get("image")) for item in items if isinstance(item, dict)}
    names = [files.get(i, i) for i in ids]
    if not names:
        meta = getattr(batch.get("image"), "meta", None) or {}
        found = meta.get("filename_or_obj") or []
        names = [found] if isinstance(found, str) else [str(n) for n in found]
    return ", ".join(dict.fromkeys(names)) or "an unnamed batch"


def train_one_epoch(parts: Components, cfg: Config,
                    on_step: Callable[[int, float], None] | None = None) -> EpochStats:  # fmt: skip
    """One epoch of training steps; the mean loss is averaged over ranks. ``on_step(steps done,
    running mean loss of this rank)`` after each step."""
    parts.forward.train()
    parts.loss_fn.train()
    start = time.perf_counter()
    data_seconds, total, steps = 0.0, torch.zeros(2, dtype=torch.float64), 0
    batches = _batches(parts.train_loader, cfg.train.steps_per_epoch)
    if cfg.data.num_workers == 0 and cfg.data.prefetch:  # worker processes already prepare batches ahead
        batches = prefetched(batches)  # the next batch is drawn while this step runs
    with closing(batches):  # an error mid-epoch stops the prefetch thread too
        while True:
            fetch = time.perf_counter()
            batch = next(batches, None)
            data_seconds += time.perf_counter() - fetch
            if batch is None:
                break
            loss = float(_train_step(parts, cfg, batch))
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {steps + 1} on {_batch_files(batch, parts.train_loader)}; "
                                         "check these files or lower optim.lr")  # fmt: skip
            total += torch.tensor([loss, 1.0], dtype=torch.float64)
            steps += 1
            if on_step is not None:
                on_step(steps, float(total[0] / total[1]))
    reduced = all_reduce_sum(total.to(parts.device), parts.ctx).cpu()
    mean = float(reduced[0] / reduced[1]) if reduced[1] > 0 else math.nan
    return EpochStats(mean, steps, time.perf_counter() - start, data_seconds)


def _epoch_row(cfg: Config, epoch: int, stats: EpochStats, val: ValidationResult | None, lr: float,
               seconds: float) -> dict[str, Any]:  # fmt: skip
    names = cfg.data.class_names
    nan_list = [math.nan] * len(names)
    dice, iou = (val.dice, val.iou) if val else (nan_list, nan_list)
    row: dict[str, Any] = {"epoch": epoch, "train_loss": stats.loss, "val_loss": val.loss if val else math.nan}
    row.update({f"dice_{c}": d for c, d in zip(names, dice, strict=True)})
    row.update({f"iou_{c}": v for c, v in zip(names, iou, strict=True)})
    row.update(mean_fg_dice=val.mean_fg_dice if val else math.nan, lr=lr, seconds=seconds)
    return row


def _shared_data(cfg: Config, run_dir: Path, skip_bad: bool,
                 ctx: DistContext) -> tuple[Split, list[tuple[Path, str]]]:  # fmt: skip
    """Rank 0 discovers the pairs once, checks them (:func:`check_training_data`) and splits the good
    ones (:func:`training_split`); every rank gets that answer (or error): (split, bad files)."""
    answer: tuple[BaseException | None, Any] = (None, None)
    if ctx.is_main:
        try:
            pairs = training_pairs(cfg)
            skip, bad = check_training_data(cfg, run_dir, skip_bad, pairs)
            answer = (None, (training_split(cfg, skip, pairs), bad))
        except (FileNotFoundError, ValueError) as err:
            answer = (err, None)
    error, data = broadcast_object(answer, ctx)
    if error is not None:
        raise error
    return data


def _save_epoch(cfg: Config, parts: Components, state: RunState, run_dir: Path, improved: bool) -> None:
    """Rank 0: metrics.csv and curves first, then best.pt, then last.pt (a kill in between is
    repaired on resume, which drops metrics rows newer than last.pt)."""
    write_metrics(run_dir / "metrics.csv", state.rows, cfg.data.class_names)
    plot_training_curves(state.rows, cfg.data.class_names, run_dir / "curves.png")
    payload = checkpoint_payload(cfg, parts, state.epoch, state.best_metric)
    if improved:
        save_checkpoint(run_dir / "best.pt", payload)
    save_checkpoint(run_dir / "last.pt", payload)


def _last_dice(state: RunState) -> str:
    scores = [r["mean_fg_dice"] for r in state.rows if not math.isnan(r["mean_fg_dice"])]
    return f"  val fg Dice {scores[-1]:.3f}" if scores else ""


def _run_epoch(cfg: Config, parts: Components, state: RunState,
               progress: ProgressCallback | None) -> tuple[dict, EpochStats]:  # fmt: skip
    epoch = state.epoch  # 0-based index of the epoch being run
    start = time.perf_counter()
    seed_epoch(cfg, epoch, parts.train_loader, parts.ctx.rank)
    steps = cfg.train.steps_per_epoch or len(parts.train_loader)
    name = f"epoch {epoch + 1}/{cfg.train.epochs}"
    report(progress, 0, steps, name + _last_dice(state))  # no loss yet: none is shown

    def on_step(done: int, loss: float) -> None:
        # done == steps is reported once, after validation: one finished epoch, one report.
        if done < steps:
            report(progress, done, steps, f"{name}  loss {loss:.4f}{_last_dice(state)}")

    lr = parts.optimizer.param_groups[0]["lr"]
    stats = train_one_epoch(parts, cfg, on_step if progress is not None else None)
    parts.scheduler.step()
    due = not cfg.data.all_cases and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs)
    val = validate(parts.shipped, parts.loss_fn, parts.val_loader, cfg, parts.device, parts.ctx, parts.amp) if due else None
    row = _epoch_row(cfg, epoch + 1, stats, val, lr, time.perf_counter() - start)
    dice = "" if math.isnan(row["mean_fg_dice"]) else f"  val fg Dice {row['mean_fg_dice']:.3f}"
    report(progress, steps, steps, f"{name}  loss {stats.loss:.4f}{dice or _last_dice(state)}")
    return row, stats


def _run_epochs(cfg: Config, parts: Components, state: RunState, run_dir: Path,
                progress: ProgressCallback | None) -> None:  # fmt: skip
    ctx = parts.ctx
    logger = open_run_log(run_dir) if ctx.is_main else None
    try:
        if logger and state.epoch:
            logger.info("resumed from last.pt after epoch %d", state.epoch)
        elif logger and cfg.data.all_cases:
            logger.info("data.all_cases: every case trains (%d), nothing validates; best.pt is the last epoch",
                        len(parts.train_loader.dataset))  # fmt: skip
        while state.epoch < cfg.train.epochs:
            row, stats = _run_epoch(cfg, parts, state, progress if ctx.is_main else None)
            state.epoch += 1
            state.rows.append(row)
            improved = _record_best(cfg, state, row)
            if logger:
                _save_epoch(cfg, parts, state, run_dir, improved)
                logger.info(_log_line(row, stats))
    finally:
        if logger:
            close_run_log(logger)


def _record_best(cfg: Config, state: RunState, row: dict[str, Any]) -> bool:
    """Whether the epoch just run is the best so far (best.pt is rewritten): a higher validation Dice,
    or every epoch with ``data.all_cases`` (nothing validates, best.pt is the last epoch; the best
    score stays unset)."""
    if cfg.data.all_cases:
        state.best_epoch = state.epoch
        return True
    score = row["mean_fg_dice"]
    improved = not math.isnan(score) and score > state.best_metric
    if improved:
        state.best_metric, state.best_epoch = score, state.epoch
    return improved


def _log_line(row: dict[str, Any], stats: EpochStats) -> str:
    """One epoch's log line; the validation fields only after an epoch that validated (not NaN)."""
    dice = " ".join(f"{k[5:]}={v:.4f}" for k, v in row.items() if k.startswith("dice_"))
    scores = ("" if math.isnan(row["val_loss"]) else
              f"val_loss={row['val_loss']:.5f} mean_fg_dice={row['mean_fg_dice']:.4f} {dice} ")  # fmt: skip
    return (f"epoch {row['epoch']} train_loss={row['train_loss']:.5f} {scores}lr={row['lr']:.3g} "
            f"steps={stats.steps} seconds={row['seconds']:.1f} data_wait={stats.data_seconds:.1f}s")  # fmt: skip


def train(cfg: Config, run_dir: Path, resume: bool = False, device: str | None = None,
          progress: ProgressCallback | None = None, skip_bad: bool = False) -> TrainResult:  # fmt: skip
    """Train ``cfg`` into ``run_dir`` (or continue it from ``last.pt`` with ``resume=True``).

    Writes config.yaml, metrics.csv, curves.png, last.pt, best.pt and train.log (rank 0 only under
    ``torchrun``). Refuses a ``run_dir`` that already holds a run unless ``resume``. Every pair is
    validated first (:func:`check_training_data`, cached): bad files raise ``BadFilesError`` before
    anything is built or written, or are left out with ``skip_bad``. The data is discovered and
    split once (:func:`~medseg_dfl.data.folds.training_split`, fold-aware): the datasets,
    ``split.json`` and the checkpoint's red-cell ``scale`` all use that one split. With
    ``data.all_cases`` every case trains, nothing validates and best.pt is rewritten every epoch.
    """
    run_dir = Path(run_dir)
    requested = resolve_device(device or cfg.train.device)
    ctx = init_distributed(requested.type)
    # cuda:N is honoured by a single process (as infer does); under torchrun each rank takes its local GPU.
    run_device = requested if requested.index is not None and not ctx.distributed else None
    finished = False
    try:
        with ExitStack() as held:
            refused: FileExistsError | None = None
            if ctx.is_main:  # one run per run folder: a second is refused, a killed one's claim taken over
                try:
                    held.enter_context(exclusive_folder(run_dir, "train run"))
                except FileExistsError as err:
                    refused = err
            refused = broadcast_object(refused, ctx)  # every rank stops, not only rank 0
            if refused is not None:
                raise refused
            state = _train(cfg, run_dir, resume, run_device or resolve_device(requested.type, ctx.local_rank),
                           progress, ctx, skip_bad)  # fmt: skip
        finished = True
    finally:
        # _train has returned, so the DDP wrapper is gone before the process group is.
        cleanup_distributed(ctx, synchronize=finished)
    best = state.best_metric if state.best_epoch is not None and not cfg.data.all_cases else math.nan
    best_epoch = (state.epoch or None) if cfg.data.all_cases else state.best_epoch  # all_cases: best.pt is the last
    return TrainResult(run_dir, best, best_epoch, state.epoch, state.rows, ctx.rank, state.skipped, state.split)


def _train(cfg: Config, run_dir: Path, resume: bool, device: torch.device, progress: ProgressCallback | None,
           ctx: DistContext, skip_bad: bool = False) -> RunState:  # fmt: skip
    payload = shared_run_dir(cfg, run_dir, resume, ctx)
    check_input_size(cfg)  # a config error is found before any data is read
    split, skipped = _shared_data(cfg, run_dir, skip_bad, ctx)
    _seed_build(cfg)
    parts = build_components(cfg, device, ctx, split)
    if payload is not None:
        restore_components(parts, payload)
        _follow_schedule(cfg, parts, int(payload["epoch"]))
    state = resume_state(run_dir, payload) if ctx.is_main else RunState(rows=[])
    state = broadcast_object(state, ctx)
    state.skipped, state.split = skipped, split
    created = ctx.is_main and not run_dir.exists()
    if ctx.is_main:  # only now: a config or data error leaves no half-made run directory
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(run_dir)  # e.g. a .last.tmp-<pid>-<hex>.pt of a run killed mid-save
        save_config(cfg, run_dir / "config.yaml")
        write_split(run_dir, split.record())  # which cases trained and validated this model (which fold)
    try:
        _run_epochs(cfg, parts, state, run_dir, progress)
    except BaseException:
        # An error in the first epoch (a loss that cannot be computed, a bad value found late) leaves
        # no run folder without a checkpoint behind: it would refuse the next run as "already a run".
        if created and not (run_dir / "last.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return state


def _follow_schedule(cfg: Config, parts: Components, epoch: int) -> None:
    """Set the LR of the next epoch from this config's schedule (train.epochs may have grown)."""
    for group, base in zip(parts.optimizer.param_groups, parts.scheduler.base_lrs, strict=True):
        group["lr"] = base * lr_factor(cfg, epoch)


def _seed_build(cfg: Config) -> None:
    """Seed the network's initialisation and pick deterministic kernels when asked."""
    torch.manual_seed(cfg.experiment.seed)
    np.random.seed(cfg.experiment.seed)
    random.seed(cfg.experiment.seed)
    torch.backends.cudnn.deterministic = cfg.train.deterministic
    torch.backends.cudnn.benchmark = not cfg.train.deterministic

