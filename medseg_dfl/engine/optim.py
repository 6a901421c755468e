"""Optimiser and learning-rate schedule from ``cfg.optim``.

The schedule steps once per epoch (like nnU-Net's poly), so the LR recorded in metrics.csv is the
LR every step of that epoch used, and resuming at an epoch boundary restores it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from medseg_dfl.config import Config

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "trainable_parameters"]


def trainable_parameters(*modules: nn.Module) -> list[nn.Parameter]:
    """Parameters that need gradients: the network's and the loss's own (e.g. a learnable scale)."""
    return [p for module in modules for p in module.parameters() if p.requires_grad]


def build_optimizer(cfg: Config, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov momentum) over ``params``."""
    opt = cfg.optim
    params = list(params)
    if opt.name == "adamw":
        return torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=opt.momentum > 0
        )
    raise ValueError(f"optim.name {opt.name!r} is not one of adamw, sgd")


def lr_factor(cfg: Config, epoch: int) -> float:
    """Multiplier of ``optim.lr`` for 0-based ``epoch``: linear warm-up, then cosine/poly/constant."""
    opt, total = cfg.optim, cfg.train.epochs
    if epoch < opt.warmup_epochs:
        return (epoch + 1) / (opt.warmup_epochs + 1)
    span = max(total - opt.warmup_epochs, 1)
    progress = min((epoch - opt.warmup_epochs) / span, 1.0)
    floor = opt.min_lr / opt.lr
    if opt.scheduler == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if opt.scheduler == "poly":
        return floor + (1.0 - floor) * (1.0 - progress) ** opt.poly_power
    return 1.0


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch :class:`LambdaLR` over :func:`lr_factor` (its state_dict is plain numbers)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))
