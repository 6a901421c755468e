"""The one overlap-metric convention, shared by training validation (``metrics.csv``) and
``evaluate`` (its report), so both give the same number for the same case.

Per image and class (MONAI ``DiceMetric``/``MeanIoU``, ``ignore_empty=False``), then:

- class in the truth: Dice/IoU as usual (0 when the prediction misses it entirely);
- class absent from the truth but predicted: 0 (a false positive is an error and counts);
- class absent from both: NaN, *not scored*: nothing to find and nothing wrongly found, so it
  neither rewards (1.0) nor punishes (0.0). Means over images or classes skip NaN, and a
  class absent everywhere has a NaN mean.
"""

from __future__ import annotations

import torch
from monai.metrics import DiceMetric, MeanIoU

__all__ = ["dice_iou"]


def dice_iou(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU of one-hot ``(B, C, spatial...)`` tensors: two ``(B, C)`` float tensors (see above)."""
    pred, truth = pred.float(), truth.float()
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(pred, truth)
    iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(pred, truth)
    absent = ~(pred.flatten(2).any(-1) | truth.flatten(2).any(-1))
    return dice.masked_fill(absent, torch.nan), iou.masked_fill(absent, torch.nan)
