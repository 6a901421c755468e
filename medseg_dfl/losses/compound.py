"""``DiceDualFocalLoss``: ``lambda_dice * DiceLoss + lambda_dfl * DualFocalLoss``, composed the way
MONAI's ``DiceFocalLoss`` composes (it holds a ``monai.losses.DiceLoss`` and a ``DualFocalLoss``).

Each part receives the caller's target and converts it itself, so the DFL's label checks and
``ignore_index`` handling apply. Its learnable scale and ACW buffers are reached through the usual
``parameters()`` / ``state_dict()`` (as ``dfl.log_alpha_inv``, ``dfl.class_weights.*``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

from medseg_dfl.losses.dual_focal import DualFocalLoss

__all__ = ["DiceDualFocalLoss"]


class DiceDualFocalLoss(_Loss):
    """Dice + Dual Focal Loss on logits B,C,spatial.

    ``include_background``, ``to_onehot_y``, ``softmax``/``sigmoid``, ``weight`` and
    ``ignore_index`` go to both parts; ``squared_pred``, ``jaccard``, ``smooth_nr``, ``smooth_dr``,
    ``batch`` to the Dice part; the DFL keywords to the DFL part. ``reduction`` is "mean" or "sum"
    (the two parts have different "none" shapes).
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        softmax: bool = True,
        sigmoid: bool = False,
        squared_pred: bool = False,
        jaccard: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        rho: float = 1.0,
        eps: float = 1e-3,
        weight: Sequence[float] | torch.Tensor | None = None,
        adaptive_weights: bool = False,
        weight_momentum: float | None = 0.99,
        learnable_alpha: bool = False,
        ignore_index: int | None = None,
        lambda_dice: float = 1.0,
        lambda_dfl: float = 1.0,
        reduction: str = "mean",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if lambda_dice < 0.0 or lambda_dfl < 0.0:
            raise ValueError(f"lambda_dice and lambda_dfl must be >= 0, got {lambda_dice} and {lambda_dfl}.")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"DiceDualFocalLoss reduction must be 'mean' or 'sum', got {reduction!r}.")
        self.dfl = DualFocalLoss(
            include_background=include_background, to_onehot_y=to_onehot_y, softmax=softmax,
            sigmoid=sigmoid, alpha=alpha, beta=beta, gamma=gamma, rho=rho, eps=eps, weight=weight,
            adaptive_weights=adaptive_weights, weight_momentum=weight_momentum,
            learnable_alpha=learnable_alpha, ignore_index=ignore_index, reduction=reduction,
            num_classes=num_classes,
        )  # fmt: skip
        self.dice = DiceLoss(
            include_background=include_background, to_onehot_y=to_onehot_y, softmax=softmax,
            sigmoid=sigmoid, squared_pred=squared_pred, jaccard=jaccard, reduction=reduction,
            smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, weight=weight, ignore_index=ignore_index,
        )  # fmt: skip
        self.lambda_dice = lambda_dice
        self.lambda_dfl = lambda_dfl

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """input: logits B,C,spatial; target: B,C,spatial one-hot, or B,1,spatial with to_onehot_y."""
        dfl = self.dfl(input, target)  # first: it validates shapes and labels with clear errors
        dice = self.dice(input, target)
        return self.lambda_dice * dice + self.lambda_dfl * dfl
