"""Baseline losses a reader expects beside the Dual Focal Loss, built from MONAI's parts.

- :class:`InverseFrequencyCrossEntropyLoss` ("wce"): cross entropy weighted by inverse class
  frequency. Fixed ``weight`` when given; otherwise the weights are ``mean_k(f_k) / f_c`` of the
  *cumulative* class frequencies of every training target seen so far (``AdaptiveClassWeights``
  with ``momentum=None``), i.e. the frequencies of the data as the patch sampler delivers it. They
  are frozen outside training mode, so validation uses the weights training reached.
- :class:`FocalTverskyLoss` ("focal-tversky"): MONAI's ``TverskyLoss`` per (image, class), raised to
  ``1 / gamma`` (Abraham & Khan 2019; gamma = 4/3 there), then averaged.
- :class:`SoftmaxDiceFocalLoss` ("dice-focal-softmax"): MONAI ``DiceLoss(softmax=True)`` +
  MONAI ``FocalLoss(use_softmax=True)``. MONAI's own ``DiceFocalLoss`` does not pass
  ``use_softmax`` to its focal part (MONAI issue 8242), so its focal term is a per-class sigmoid
  focal loss even with ``softmax=True``; composing the two parts ourselves avoids that.

All take logits B,C,spatial and integer labels B,1,spatial (the registry fixes that contract).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss, TverskyLoss
from torch.nn.modules.loss import _Loss

from medseg_dfl.losses.class_weights import AdaptiveClassWeights

__all__ = ["FocalTverskyLoss", "InverseFrequencyCrossEntropyLoss", "SoftmaxDiceFocalLoss"]


def _labels(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return target[:, 0].long() if target.dim() == input.dim() else target.long()


class InverseFrequencyCrossEntropyLoss(_Loss):
    """Cross entropy with inverse-frequency class weights (fixed ``weight``, or running ones).

    Args:
        num_classes: C (output channels).
        weight: fixed per-class weights; ``None`` = inverse cumulative frequencies of the targets.
        weight_range: clip of the raw running weights (before normalising them to mean 1).
        ignore_index: label value left out of the loss and of the frequencies.
    """

    def __init__(
        self,
        num_classes: int,
        weight: Sequence[float] | torch.Tensor | None = None,
        weight_range: tuple[float, float] = (0.05, 20.0),
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.num_classes = num_classes
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.class_weights = (
            AdaptiveClassWeights(num_classes, momentum=None, weight_range=tuple(weight_range)) if weight is None else None
        )
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def current_weights(self) -> torch.Tensor:
        """The class weights the next forward pass uses (C,)."""
        return self.weight if self.class_weights is None else self.class_weights.weights()

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = _labels(input, target)
        if self.class_weights is not None:
            valid = labels != self.ignore_index
            self.class_weights.update_from_labels(labels[valid], self.num_classes)
        weight = self.current_weights().to(device=input.device, dtype=input.dtype)
        return F.cross_entropy(input, labels, weight=weight, ignore_index=self.ignore_index, reduction=self.reduction)


class FocalTverskyLoss(_Loss):
    """``mean((1 - TverskyIndex) ** (1 / gamma))`` over images and classes (MONAI's Tversky index).

    ``alpha`` weighs false positives, ``beta`` false negatives (0.3 / 0.7: missing a rare structure
    costs more than over-segmenting it); ``gamma = 1`` is the plain Tversky loss.
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = True,
        softmax: bool = True,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 4.0 / 3.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if gamma <= 0:
            raise ValueError(f"focal Tversky gamma must be > 0, got {gamma}.")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
        self.gamma = float(gamma)
        self.tversky = TverskyLoss(
            include_background=include_background, to_onehot_y=to_onehot_y, softmax=softmax, alpha=alpha,
            beta=beta, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, reduction="none",
        )  # fmt: skip

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_class = self.tversky(input, target).clamp(min=0.0)  # B,C,1.. (or C,1.. with batch=True)
        focal = per_class.pow(1.0 / self.gamma)
        return focal.mean() if self.reduction == "mean" else focal.sum()


class SoftmaxDiceFocalLoss(_Loss):
    """``lambda_dice * DiceLoss(softmax) + lambda_focal * FocalLoss(use_softmax)`` (MONAI parts)."""

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = True,
        gamma: float = 2.0,
        alpha: float | None = None,
        weight: Sequence[float] | torch.Tensor | None = None,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if lambda_dice < 0.0 or lambda_focal < 0.0:
            raise ValueError(f"lambda_dice and lambda_focal must be >= 0, got {lambda_dice} and {lambda_focal}.")
        self.dice = DiceLoss(
            include_background=include_background, to_onehot_y=to_onehot_y, softmax=True, weight=weight,
            smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, reduction=reduction,
        )  # fmt: skip
        self.focal = FocalLoss(
            include_background=include_background, to_onehot_y=to_onehot_y, use_softmax=True, gamma=gamma,
            alpha=alpha, weight=weight, reduction=reduction,
        )  # fmt: skip
        self.lambda_dice = lambda_dice
        self.lambda_focal = lambda_focal

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lambda_dice * self.dice(input, target) + self.lambda_focal * self.focal(input, target)
