"""``DualFocalLoss``: the MONAI-style loss module around ``functional.dual_focal_loss``.

It owns the argument checks, one-hot conversion, background handling, ``ignore_index``, the class
weights (fixed or adaptive) and the learnable scale; the math is in ``functional.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from monai.networks import one_hot
from monai.utils import LossReduction
from torch import nn
from torch.nn.modules.loss import _Loss

from medseg_dfl.losses.class_weights import AdaptiveClassWeights
from medseg_dfl.losses.functional import dual_focal_loss

__all__ = ["DualFocalLoss"]

# The learnable scale alpha = exp(-s) is kept in [exp(-S_LIMIT), exp(S_LIMIT)].
S_LIMIT = 10.0


def _check_params(alpha: float, beta: float, gamma: float, rho: float, eps: float, learnable: bool) -> None:
    bad = []
    if rho < 1.0:
        bad.append(f"rho must be >= 1 (log(rho - p) needs rho >= p), got rho={rho}")
    if alpha < 0 or beta < 0:
        bad.append(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
    if gamma <= 0:
        bad.append(f"gamma must be > 0, got gamma={gamma}")
    if not 0 < eps < 1:
        bad.append(f"eps must be in (0, 1), got eps={eps}")
    if learnable and alpha <= 0:
        bad.append(f"learnable_alpha=True needs alpha > 0 (alpha = exp(-s)), got alpha={alpha}")
    if bad:
        raise ValueError("; ".join(bad) + ".")


def _as_weight(weight: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32).flatten()
    if w.numel() == 0 or not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weight must be a non-empty sequence of finite numbers >= 0, got {weight}.")
    return w


class DualFocalLoss(_Loss):
    """Dual Focal Loss (Hossain, Betts & Paplinski, Neurocomputing 2021) for logits B,C,spatial.

    Per pixel, summed over classes: ``-y log p - beta (1 - y) log(max(rho - p, eps)) + alpha |y - p|^gamma``,
    times a per-class weight. See docs/losses.md for the parameters and examples.

    Args:
        include_background: if False, channel 0 is dropped after the softmax (MONAI's order).
        to_onehot_y: target is B,1,spatial class indices, converted to one-hot.
        softmax: softmax over channels (default). sigmoid: per-channel sigmoid, each channel the
            two-class problem (1 - p, p) (binary and multi-label). Neither: input holds probabilities.
        alpha, beta, gamma, rho, eps: the loss parameters (spec section 1).
        weight: fixed per-class weights, length C (or C - 1 with ``include_background=False``).
        adaptive_weights: ACW weights from running class frequencies (``AdaptiveClassWeights``).
        weight_momentum: EMA momentum of the ACW frequencies; None = cumulative.
        learnable_alpha: learn alpha = exp(-s) with the Kendall et al. term ``exp(-s) F + s``;
            s is the parameter ``log_alpha_inv`` (so pass ``loss.parameters()`` to the optimiser).
        ignore_index: label value whose pixels are left out (MONAI's semantics for one-hot targets).
        reduction: "mean" (over pixels, of the sum over classes), "sum", or "none" (B,C,spatial).
        num_classes: optional C, to check ``weight`` and size the ACW buffers at construction.
        compiled: run the ``torch.compile``d kernels (softmax with a reduction): None (default) =
            for inputs of 2**18 elements or more that need a gradient (training), True = always,
            False = never (eager fused path).
            The first large call compiles (logged, seconds; cached on disk); if compilation is not
            available the loss warns once and runs the eager path.
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        softmax: bool = True,
        sigmoid: bool = False,
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
        reduction: LossReduction | str = LossReduction.MEAN,
        num_classes: int | None = None,
        compiled: bool | None = None,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if softmax and sigmoid:
            raise ValueError(f"softmax and sigmoid are exclusive, got softmax={softmax}, sigmoid={sigmoid}.")
        _check_params(alpha, beta, gamma, rho, eps, learnable_alpha)
        class_weight = _as_weight(weight)
        if class_weight is not None and adaptive_weights:
            raise ValueError("weight (fixed) and adaptive_weights=True are exclusive; choose one.")
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.activation = "softmax" if softmax else "sigmoid" if sigmoid else "none"
        self.alpha, self.beta, self.gamma, self.rho, self.eps = float(alpha), beta, gamma, rho, eps
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        self.compiled = compiled
        self.register_buffer("class_weight", class_weight)
        if num_classes is not None and class_weight is not None:
            self._full_weight(class_weight, num_classes)  # raises early on a wrong length
        self.class_weights = AdaptiveClassWeights(num_classes, weight_momentum) if adaptive_weights else None
        self.log_alpha_inv = nn.Parameter(torch.tensor(-math.log(alpha))) if learnable_alpha else None

    @property
    def current_alpha(self) -> float:
        """The scale in use: alpha, or exp(-s) when learnable."""
        if self.log_alpha_inv is None:
            return self.alpha
        return float(torch.exp(-self.log_alpha_inv.detach().clamp(-S_LIMIT, S_LIMIT)))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """input: logits B,C,spatial; target: B,C,spatial one-hot, or B,1,spatial with to_onehot_y."""
        _check_input(input)
        n_channels = input.shape[1]
        y, mask = self._prepare_target(input, target)
        drop_background = self._drop_background(n_channels)
        weight = self._weights(y, mask, n_channels, drop_background)
        alpha: float | torch.Tensor = self.alpha
        if self.log_alpha_inv is not None:
            alpha = torch.exp(-self.log_alpha_inv.clamp(-S_LIMIT, S_LIMIT))
        loss = dual_focal_loss(
            input, y, alpha=alpha, beta=self.beta, gamma=self.gamma, rho=self.rho, eps=self.eps,
            weight=weight, mask=mask, activation=self.activation, reduction=self.reduction,
            compiled=self.compiled,
        )  # fmt: skip
        if drop_background and self.reduction == LossReduction.NONE.value:
            loss = loss[:, 1:]
        if self.log_alpha_inv is not None:  # Kendall et al.: + s, once per reduced loss
            s = self.log_alpha_inv.clamp(-S_LIMIT, S_LIMIT)
            loss = loss + (s / loss.shape[1] if self.reduction == LossReduction.NONE.value else s)
        return loss

    def _drop_background(self, n_channels: int) -> bool:
        if self.include_background:
            return False
        if n_channels == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.", stacklevel=3)
            return False
        return True

    def _prepare_target(self, input: torch.Tensor, target: torch.Tensor):
        """Target (one-hot float B,C,spatial, or long labels B,1,spatial) and a pixel mask B,1,spatial or None."""
        n_channels = input.shape[1]
        if self.to_onehot_y:
            labels, mask = _check_labels(input, target, self.ignore_index)
            if n_channels == 1:  # binary: the labels are already the target of the single channel
                return labels.to(input.dtype), mask
            if self.activation == "softmax" and self.reduction != LossReduction.NONE.value:
                return labels, mask  # the functional's label path: no one-hot tensor
            return one_hot(labels, num_classes=n_channels, dtype=torch.float32), mask
        if target.shape != input.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)} "
                "(or use to_onehot_y=True with a B,1,spatial label map)."
            )
        mask = None
        if self.ignore_index is not None:
            if 0 <= self.ignore_index < n_channels:
                mask = 1.0 - target[:, self.ignore_index : self.ignore_index + 1].float()
            else:  # sentinel: all-zero pixels are ignored (MONAI's convention)
                mask = (target.sum(1, keepdim=True) > 0).float()
        return target, mask

    def _weights(self, y, mask, n_channels: int, drop_background: bool) -> torch.Tensor | None:
        weight = self.class_weight
        if weight is not None:
            weight = self._full_weight(weight, n_channels)
        elif self.class_weights is not None:
            if y.is_floating_point():
                self.class_weights.update(y, mask)
            else:
                self.class_weights.update_from_labels(y, n_channels, mask)
            weight = self.class_weights.weights()
        if drop_background:
            weight = torch.ones(n_channels, device=y.device) if weight is None else weight.clone()
            weight[0] = 0.0
        return None if weight is None else weight.to(y.device)

    def _full_weight(self, weight: torch.Tensor, n_channels: int) -> torch.Tensor:
        if weight.numel() == n_channels:
            return weight
        if not self.include_background and weight.numel() == n_channels - 1:
            return torch.cat([weight.new_zeros(1), weight])
        expected = f"{n_channels}" + ("" if self.include_background else f" or {n_channels - 1}")
        raise ValueError(f"weight has {weight.numel()} values ({weight.tolist()}); expected {expected} (classes).")


def _check_input(input: torch.Tensor) -> None:
    if input.dim() < 3:
        raise ValueError(f"input must be B,C,spatial (at least 3 dims), got shape {tuple(input.shape)}.")
    # A sum is ~10x cheaper than isfinite().all(); confirm before raising (the sum can overflow).
    if not torch.isfinite(input.detach().sum()) and not torch.isfinite(input).all():
        bad = (~torch.isfinite(input)).sum().item()
        raise ValueError(f"input contains {bad} non-finite values (NaN or inf); shape {tuple(input.shape)}.")


def _check_labels(input: torch.Tensor, target: torch.Tensor, ignore_index: int | None):
    """Validate a B,1,spatial label map; return labels with ignored pixels set to 0, and the mask."""
    expected = (input.shape[0], 1, *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target shape {tuple(target.shape)} must be {expected} (B,1,spatial) with to_onehot_y=True.")
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError("target with to_onehot_y=True must hold integer class indices.")
    labels = target.long()
    mask = None
    if ignore_index is not None:
        keep = labels != ignore_index
        mask = keep.float()
        labels = labels * keep
    n_labels = max(input.shape[1], 2)  # one channel = binary, labels 0/1
    low, high = torch.aminmax(labels)
    if low < 0 or high >= n_labels:
        raise ValueError(
            f"target class indices must be in [0, {n_labels - 1}] for {input.shape[1]} channels, "
            f"got min {int(low)} and max {int(high)}."
        )
    return labels, mask
