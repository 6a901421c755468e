"""Deep supervision (nnU-Net): the one place that decides how a network's training output becomes a loss.

MONAI's ``DynUNet`` with ``deep_supervision: true`` returns, in training mode only, its output and
``deep_supr_num`` lower-resolution decoder heads, each already upsampled to the full patch size,
stacked on dim 1: (B, 1 + deep_supr_num, C, *spatial). In eval mode it returns the one
(B, C, *spatial) output, so validation, inference and the exports never see the heads.

The heads are weighted as nnU-Net weights them: 1, 1/2, 1/4, ... normalised to sum to 1 (3 heads:
4/7, 2/7, 1/7), through MONAI's ``DeepSupervisionLoss`` (its ``weight_mode="exp"`` would neither
normalise nor stop at 1/16). ``deep_supr_num`` is MONAI's: how many heads below the output are
supervised (1 by default; it must be below the number of upsampling stages, so the lowest
resolutions are never supervised, as in nnU-Net).

A loss with running state (``AdaptiveClassWeights`` of the dfl losses) sees the same labels once per
head, so its running class frequencies move 1 + deep_supr_num times per step.
"""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss
from torch import nn

__all__ = ["emits_heads", "head_weights", "supervised_loss"]


def head_weights(heads: int) -> list[float]:
    """nnU-Net's deep-supervision weights for ``heads`` outputs (full resolution first): 1/2^i, sum 1."""
    if heads < 1:
        raise ValueError(f"need at least one output head, got {heads}")
    raw = [0.5**i for i in range(heads)]
    return [w / sum(raw) for w in raw]


def emits_heads(output: torch.Tensor, label: torch.Tensor) -> bool:
    """Whether ``output`` is a deep-supervision stack: one dimension more than the (B, 1, *spatial)
    label (a plain output has as many: (B, C, *spatial))."""
    return output.ndim == label.ndim + 1


def supervised_loss(loss_fn: nn.Module, output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The training loss of a network's train-mode ``output`` against integer ``label`` (B, 1, *spatial),
    in float32 (bfloat16/float16 logits lose Dice/CE precision): ``loss_fn(output)`` for one output,
    the weighted sum over heads (:func:`head_weights`) for a deep-supervision stack."""
    if not emits_heads(output, label):
        return loss_fn(output.float(), label)
    heads = [head.float() for head in output.unbind(dim=1)]  # DynUNet upsampled them: label fits as is
    return DeepSupervisionLoss(loss_fn, weights=head_weights(len(heads)))(heads, label)
