"""Everything a training run is built from, in one object, and its checkpoint round trip.

:func:`build_components` makes the data loaders, network (DDP-wrapped when distributed), loss,
optimiser (network + the loss's own parameters), schedule and grad scaler from a config;
:func:`checkpoint_payload` / :func:`restore_components` turn them into a checkpoint and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from medseg_dfl.cells.scale import scale_from_config
from medseg_dfl.config import Config, config_to_dict
from medseg_dfl.data.datasets import build_datasets, build_loaders, is_preprocessed
from medseg_dfl.data.fingerprint import load_fingerprint as read_fingerprint
from medseg_dfl.data.folds import Split, training_split
from medseg_dfl.engine.checkpoint import FORMAT_VERSION, capture_rng_state, restore_rng_state
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.optim import build_optimizer, build_scheduler, trainable_parameters
from medseg_dfl.engine.precision import autocast_dtype, compile_network, memory_format
from medseg_dfl.engine.scoring import shard_val_loader
from medseg_dfl.losses.registry import loss_from_config
from medseg_dfl.networks import build_network

__all__ = ["Components", "build_components", "checkpoint_payload", "load_fingerprint", "restore_components"]


@dataclass
class Components:
    model: nn.Module  # the bare network (what checkpoints hold)
    forward: nn.Module  # what the training step calls: model, or DDP(model)
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_loader: DataLoader
    val_loader: DataLoader | None  # None: data.all_cases, nothing validates
    device: torch.device
    ctx: DistContext
    amp: bool  # autocast: float16 on CUDA, bfloat16 on a CPU with native support (engine/precision.py)
    fingerprint: dict[str, Any] | None
    scale: dict[str, Any] | None = None  # 2D smears: training red-cell diameter (medseg_dfl.cells.scale)
    memory_format: torch.memory_format = torch.contiguous_format  # of the network's weights and inputs
    ema: AveragedModel | None = None  # train.ema_decay: the weights' moving average

    @property
    def shipped(self) -> nn.Module:
        """The network that is validated and saved as ``model_state``: the moving average when
        ``train.ema_decay`` is set, else the trained network itself."""
        return self.model if self.ema is None else self.ema.module

    def update_average(self) -> None:
        """After an optimiser step: fold the new weights into the moving average (if any)."""
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    @property
    def params(self) -> list[nn.Parameter]:
        return trainable_parameters(self.model, self.loss_fn)

    @property
    def loss_params(self) -> list[nn.Parameter]:
        return trainable_parameters(self.loss_fn)


def load_fingerprint(cfg: Config) -> dict[str, Any] | None:
    """The dataset fingerprint ``build_datasets`` would use (a ``preprocess`` output folder's
    fingerprint.json), so the checkpoint carries the exact preprocessing statistics."""
    root = Path(cfg.data.root)
    return read_fingerprint(root) if is_preprocessed(root) else None


def _build_loaders(cfg: Config, ctx: DistContext, fingerprint: dict | None,
                   split: Split) -> tuple[DataLoader, DataLoader | None]:  # fmt: skip
    """(train, validation) loaders; no validation loader with ``data.all_cases`` (nothing validates)."""
    train_ds, val_ds = build_datasets(cfg, fingerprint=fingerprint, split=split)
    if len(train_ds) == 0 or (len(val_ds) == 0 and not cfg.data.all_cases):
        raise ValueError(
            f"{cfg.data.root}: need at least one training and one validation case "
            f"(got {len(train_ds)} and {len(val_ds)}; see data.val_fraction, or data.all_cases to train on "
            "every case without validation)"
        )
    train_loader, val_loader = build_loaders(cfg, train_ds, val_ds, distributed=ctx.distributed, rank=ctx.rank)
    if cfg.data.all_cases:
        return train_loader, None
    if ctx.distributed:  # own sharding: no padded duplicates in the validation metrics
        val_loader = shard_val_loader(val_ds, ctx, cfg.data.num_workers)
    return train_loader, val_loader


def _build_model(cfg: Config, device: torch.device, ctx: DistContext,
                 fmt: torch.memory_format = torch.contiguous_format) -> tuple[nn.Module, nn.Module]:  # fmt: skip
    model = build_network(cfg).to(device, memory_format=fmt)
    if not ctx.distributed:
        return model, compile_network(model, cfg.train.compile)
    device_ids = [device.index] if device.type == "cuda" else None
    return model, compile_network(nn.parallel.DistributedDataParallel(model, device_ids=device_ids), cfg.train.compile)


def build_components(cfg: Config, device: torch.device, ctx: DistContext,
                     split: Split | None = None) -> Components:  # fmt: skip
    """Data, network, loss, optimiser, schedule and scaler for ``cfg`` on ``device``. The data and
    the recorded red-cell scale come from ``split`` (``train`` computes it once; default:
    :func:`~medseg_dfl.data.folds.training_split` of ``cfg``)."""
    amp = autocast_dtype(device, cfg.train.amp) is not None
    fmt = memory_format(device, cfg.data.spatial_dims, amp)
    # Network and loss first: a bad name or keyword fails before the data is cached.
    model, forward = _build_model(cfg, device, ctx, fmt)
    loss_fn = loss_from_config(cfg).to(device)
    fingerprint = load_fingerprint(cfg)
    split = training_split(cfg) if split is None else split
    train_loader, val_loader = _build_loaders(cfg, ctx, fingerprint, split)
    optimizer = build_optimizer(cfg, trainable_parameters(model, loss_fn))
    return Components(
        model=model,
        forward=forward,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer),
        scaler=torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda"),  # bfloat16 needs no scaling
        train_loader=train_loader,
        val_loader=val_loader,
        device=device,
        ctx=ctx,
        amp=amp,
        fingerprint=fingerprint,
        scale=scale_from_config(cfg, split),
        memory_format=fmt,
        ema=_moving_average(model, cfg.train.ema_decay),
    )


def _moving_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    # use_buffers: normalisation statistics are averaged with the weights (instance norm has none).
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def checkpoint_payload(cfg: Config, parts: Components, epoch: int, best_metric: float) -> dict[str, Any]:
    """A self-contained, weights_only-loadable checkpoint of the run after ``epoch`` epochs."""
    return {
        "format_version": FORMAT_VERSION,
        "model_state": parts.shipped.state_dict(),  # what inference loads
        "config": config_to_dict(cfg),
        "class_names": list(cfg.data.class_names),
        "fingerprint": parts.fingerprint,
        "scale": parts.scale,
        "loss_state": parts.loss_fn.state_dict(),
        "optimizer_state": parts.optimizer.state_dict(),
        "scheduler_state": parts.scheduler.state_dict(),
        "scaler_state": parts.scaler.state_dict(),
        "epoch": epoch,
        "best_metric": best_metric,
        "rng_state": capture_rng_state(),
        **_averaging_state(parts),
    }


def _averaging_state(parts: Components) -> dict[str, Any]:
    # With a moving average, model_state holds the average; training resumes from the raw weights.
    if parts.ema is None:
        return {}
    return {"train_model_state": parts.model.state_dict(), "ema_steps": int(parts.ema.n_averaged)}


def restore_components(parts: Components, payload: dict[str, Any]) -> None:
    """Load every state of a :func:`checkpoint_payload` back into freshly built components."""
    parts.model.load_state_dict(payload.get("train_model_state", payload["model_state"]))
    if parts.ema is not None:  # a run without an average before starts its average from these weights
        parts.ema.module.load_state_dict(payload["model_state"])
        parts.ema.n_averaged.fill_(int(payload.get("ema_steps", 1)))
    parts.loss_fn.load_state_dict(payload["loss_state"])
    parts.optimizer.load_state_dict(payload["optimizer_state"])
    parts.scheduler.load_state_dict(payload["scheduler_state"])
    if payload["scaler_state"]:
        parts.scaler.load_state_dict(payload["scaler_state"])
    restore_rng_state(payload["rng_state"])
