"""Validation: sliding-window inference on whole images, MONAI Dice/IoU per class, val loss.

Every rank validates its own shard of the validation images; per-class sums and counts are
all-reduced, so the numbers equal a single-process run over the whole set. Dice/IoU follow the one
convention of :mod:`medseg_dfl.engine.metrics` (shared with ``evaluate``): a class absent from both
an image's prediction and its label is not scored for that image (NaN, left out of the class mean);
predicted though absent from the label scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.data import DataLoader
from monai.inferers import sliding_window_inference
from monai.networks.utils import one_hot
from torch import nn
from torch.utils.data import Dataset, Subset

from medseg_dfl.config import Config
from medseg_dfl.engine.distributed import DistContext, all_reduce_sum
from medseg_dfl.engine.metrics import dice_iou
from medseg_dfl.engine.precision import autocast

__all__ = ["ValidationResult", "plain_tensor", "shard_val_loader", "validate"]


@dataclass
class ValidationResult:
    loss: float
    dice: list[float]  # per class, background first
    iou: list[float]

    @property
    def mean_fg_dice(self) -> float:
        """Mean Dice over the foreground classes 1..C-1 that were scored (not NaN)."""
        values = [d for d in self.dice[1:] if not math.isnan(d)]
        return sum(values) / len(values) if values else math.nan


def plain_tensor(x: torch.Tensor) -> torch.Tensor:
    """A MetaTensor's data as a plain tensor (no metadata tracking in the hot loop)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def shard_val_loader(val_ds: Dataset, ctx: DistContext, num_workers: int = 0) -> DataLoader:
    """Whole images (B=1), rank r taking images r, r+W, ... (no padding duplicates, unlike
    DistributedSampler, so multi-process metrics match single-process ones)."""
    indices = list(range(ctx.rank, len(val_ds), ctx.world_size))
    return DataLoader(Subset(val_ds, indices), batch_size=1, shuffle=False, num_workers=num_workers)


def _predict(model: nn.Module, image: torch.Tensor, cfg: Config, amp: bool) -> torch.Tensor:
    roi = cfg.inference.roi_size or cfg.transforms.patch_size
    with autocast(image.device, amp):
        logits = sliding_window_inference(
            image,
            roi_size=list(roi),
            sw_batch_size=cfg.inference.sw_batch_size,
            predictor=model,
            overlap=cfg.inference.overlap,
            mode=cfg.inference.blend_mode,
        )
    return plain_tensor(logits).float()


def _nan_sum_count(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sum of non-NaN entries and their count over the batch dimension."""
    valid = ~torch.isnan(values)
    return torch.where(valid, values, torch.zeros_like(values)).sum(0), valid.sum(0).to(values.dtype)


@torch.no_grad()
def validate(
    model: nn.Module, loss_fn: nn.Module, loader: DataLoader, cfg: Config, device: torch.device,
    ctx: DistContext, amp: bool = False,
) -> ValidationResult:
    """Val loss, per-class Dice and IoU over ``loader`` (this rank's shard), reduced over ranks."""
    num_classes = cfg.data.num_classes
    # rows: dice sum, dice count, iou sum, iou count; last column of row 0/1: loss sum, image count
    totals = torch.zeros(4, num_classes + 1, dtype=torch.float64, device=device)
    model.eval()
    loss_fn.eval()
    for batch in loader:
        image = plain_tensor(batch["image"]).to(device)
        label = plain_tensor(batch["label"]).to(device).long()
        logits = _predict(model, image, cfg, amp)
        totals[0, -1] += float(loss_fn(logits, label)) * image.shape[0]
        totals[1, -1] += image.shape[0]
        pred = one_hot(logits.argmax(1, keepdim=True), num_classes)
        truth = one_hot(label, num_classes)
        for row, values in zip((0, 2), dice_iou(pred, truth), strict=True):
            total, count = _nan_sum_count(values.double())
            totals[row, :num_classes] += total
            totals[row + 1, :num_classes] += count
    all_reduce_sum(totals, ctx)
    per_class = totals[:, :num_classes]
    dice = torch.where(per_class[1] > 0, per_class[0] / per_class[1].clamp(min=1), torch.nan)
    iou = torch.where(per_class[3] > 0, per_class[2] / per_class[3].clamp(min=1), torch.nan)
    loss = float(totals[0, -1] / totals[1, -1]) if totals[1, -1] > 0 else math.nan
    return ValidationResult(loss=loss, dice=dice.tolist(), iou=iou.tolist())
