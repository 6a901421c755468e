"""Losses by name: the one place that maps a config's ``loss.name`` to a module.

Every loss built here takes ``(logits B,C,spatial, target B,1,spatial integer labels)``: the label
conversion (``to_onehot_y=True``) and the softmax are fixed here, not left to the caller.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss
from torch import nn

from medseg_dfl.choices import LOSS_NAMES
from medseg_dfl.losses.baselines import (
    FocalTverskyLoss,
    InverseFrequencyCrossEntropyLoss,
    SoftmaxDiceFocalLoss,
)
from medseg_dfl.losses.compound import DiceDualFocalLoss
from medseg_dfl.losses.dual_focal import DualFocalLoss

__all__ = ["LOSS_NAMES", "LabelCrossEntropyLoss", "ResolvedLoss", "build_loss", "loss_from_config", "resolve_loss"]


class LabelCrossEntropyLoss(nn.Module):
    """``F.cross_entropy`` for logits B,C,spatial and labels B,1,spatial (the ``ce`` baseline)."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.ignore_index = -100 if ignore_index is None else ignore_index
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long() if target.dim() == input.dim() else target.long()
        weight = None if self.weight is None else self.weight.to(input.dtype)
        return F.cross_entropy(
            input, labels, weight=weight, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, reduction=self.reduction,
        )  # fmt: skip


# name -> (constructor, fixed keywords, default keywords). Fixed ones make the (logits, labels) contract.
_LABELS_SOFTMAX = {"to_onehot_y": True, "softmax": True}
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], dict[str, Any]]] = {
    "dfl": (DualFocalLoss, {**_LABELS_SOFTMAX, "sigmoid": False}, {}),
    "dfl-acw": (DualFocalLoss, {**_LABELS_SOFTMAX, "sigmoid": False, "adaptive_weights": True}, {}),
    "dfl-learnable": (DualFocalLoss, {**_LABELS_SOFTMAX, "sigmoid": False, "learnable_alpha": True}, {}),
    "dice-dfl": (DiceDualFocalLoss, {**_LABELS_SOFTMAX, "sigmoid": False}, {}),
    "ce": (LabelCrossEntropyLoss, {}, {}),
    "focal": (FocalLoss, {"to_onehot_y": True, "use_softmax": True}, {}),
    "dice": (DiceLoss, {**_LABELS_SOFTMAX, "sigmoid": False}, {}),
    "dice-ce": (DiceCELoss, {**_LABELS_SOFTMAX, "sigmoid": False}, {}),
    # MONAI's DiceFocalLoss: softmax for the Dice part; its focal part is MONAI's sigmoid focal loss
    # (it does not pass use_softmax on, MONAI issue 8242). "dice-focal-softmax" is the softmax one.
    "dice-focal": (DiceFocalLoss, {**_LABELS_SOFTMAX, "sigmoid": False}, {}),
    "dice-focal-softmax": (SoftmaxDiceFocalLoss, {"to_onehot_y": True}, {}),
    "wce": (InverseFrequencyCrossEntropyLoss, {}, {}),
    "tversky": (FocalTverskyLoss, _LABELS_SOFTMAX, {"gamma": 1.0}),
    "focal-tversky": (FocalTverskyLoss, _LABELS_SOFTMAX, {}),
}
# The names are listed once, in medseg_dfl.choices; a test keeps _REGISTRY's keys equal to them.
_TAKES_NUM_CLASSES = (DualFocalLoss, DiceDualFocalLoss, InverseFrequencyCrossEntropyLoss)


def _allowed_kwargs(factory: Callable[..., nn.Module], fixed: dict[str, Any]) -> list[str]:
    params = inspect.signature(factory).parameters
    return sorted(k for k in params if k not in fixed and k not in ("self", "num_classes"))


def _check_weight(weight: Any, num_classes: int, include_background: bool) -> torch.Tensor:
    w = torch.as_tensor(weight, dtype=torch.float32).flatten()
    allowed = {num_classes} if include_background else {num_classes, num_classes - 1}
    if w.numel() not in allowed:
        raise ValueError(f"weight has {w.numel()} values ({w.tolist()}); expected {sorted(allowed)} for {num_classes} classes.")
    return w


@dataclass(frozen=True)
class ResolvedLoss:
    """A loss name checked against the registry and its keywords against the loss's constructor."""

    name: str
    factory: Callable[..., nn.Module]
    options: dict[str, Any]  # the registry's defaults, then the caller's keywords, then the fixed ones


def resolve_loss(name: str, kwargs: dict[str, Any] | None = None) -> ResolvedLoss:
    """The one check of a loss name and its keywords (``load_config`` and :func:`build_loss` both
    call it): ``ValueError`` for an unknown name (with the choices), keywords the loss does not take
    (all of them named, with the allowed ones), or a value of the wrong kind (a string where the
    constructor's default is a number or a flag). Builds nothing."""
    kwargs = dict(kwargs or {})
    if name not in _REGISTRY:
        raise ValueError(f"loss.name: {name!r} is not one of {', '.join(LOSS_NAMES)}")
    factory, fixed, defaults = _REGISTRY[name]
    allowed = _allowed_kwargs(factory, fixed)
    unknown = sorted(k for k in kwargs if k not in allowed)
    if unknown:
        raise ValueError(f"loss {name!r} does not take {', '.join(unknown)}; allowed keywords: {', '.join(allowed)}.")
    params = inspect.signature(factory).parameters
    for key, value in kwargs.items():
        default = params[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"loss.kwargs.{key}: expected true/false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
            isinstance(value, bool) or not isinstance(value, numbers.Real)
        ):
            raise ValueError(f"loss.kwargs.{key}: expected a number, got {value!r}")
    return ResolvedLoss(name, factory, {**defaults, **kwargs, **fixed})


def build_loss(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the loss ``name`` (one of ``LOSS_NAMES``) for ``num_classes`` output channels.

    ``kwargs`` go to the loss's constructor (e.g. ``gamma=2.0``, ``weight=[...]``, ``lambda_dice``);
    keywords that would break the (logits, integer labels) contract cannot be overridden.
    """
    resolved = resolve_loss(name, kwargs)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}.")
    options = dict(resolved.options)
    if options.get("weight") is not None:
        options["weight"] = _check_weight(options["weight"], num_classes, options.get("include_background", True))
    if resolved.factory in _TAKES_NUM_CLASSES:
        options["num_classes"] = num_classes
    return resolved.factory(**options)


def loss_from_config(cfg: Any) -> nn.Module:
    """``cfg``'s loss (``cfg.loss.name`` with ``cfg.loss.kwargs``, ``cfg.data.num_classes`` channels;
    ``cfg`` a :class:`medseg_dfl.config.Config`, not imported: config sits above losses):
    how training, planning and the bundle export build a run's loss."""
    return build_loss(cfg.loss.name, cfg.data.num_classes, **cfg.loss.kwargs)
