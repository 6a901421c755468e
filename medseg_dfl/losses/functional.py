"""The Dual Focal Loss as pure tensor math (no state, no argument policy).

Per pixel i and class c, with p = softmax(logits) over the channel dim and y the (one-hot or soft)
target, the spec (shared/spec/dual-focal-loss.md, section 1) defines

    l_ic = w_c * ( - y_ic log p_ic
                   - beta (1 - y_ic) log(max(rho - p_ic, eps))
                   + alpha |y_ic - p_ic| ** gamma )

Three implementations compute it (the tests check that they agree, values and gradients):

- ``_dfl_elementwise``: plain autograd ops; the reference the tests check everything against.
- ``_FusedDualFocal``: a ``torch.autograd.Function`` with the closed-form gradient w.r.t. the logits,

      dz_j = p_j (h_j - sum_c h_c p_c + sum_c W_c y_c) - W_j y_j,
      h_c  = W_c (beta (1 - y_c) [rho - p_c >= eps] / (rho - p_c) + alpha gamma |y_c - p_c|^(gamma-1) sign(p_c - y_c))

  (W = upstream gradient x class weight x mask), which keeps only p for the backward instead of
  autograd's many intermediates.
- ``_FusedDualFocalLabels``: the same for integer labels B,1,spatial with a reduction: no one-hot
  tensor, and the true-class terms are computed per pixel (the default path of ``DualFocalLoss``
  with ``to_onehot_y=True``; see ``benchmarks/loss_speed.py``).

Sigmoid (binary / multi-label) outputs are mapped onto the softmax form: a channel with logit z is
the two-class softmax over (0, z), since sigmoid(z) = softmax((0, z))[1], with target (1 - y, y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medseg_dfl.losses.compiled import compiled_dual_focal, worth_compiling

__all__ = ["dual_focal_loss", "ACTIVATIONS", "REDUCTIONS"]

ACTIVATIONS = ("softmax", "sigmoid", "none")
REDUCTIONS = ("mean", "sum", "none")


def _focal_power(diff_abs: torch.Tensor, gamma: float) -> torch.Tensor:
    """|d| ** gamma with a zero (not NaN) gradient at d = 0 when gamma < 1."""
    if gamma == 1.0:
        return diff_abs
    if gamma > 1.0:
        return diff_abs.pow(gamma)
    nonzero = diff_abs > 0
    safe = torch.where(nonzero, diff_abs, torch.ones_like(diff_abs))
    return torch.where(nonzero, safe.pow(gamma), torch.zeros_like(diff_abs))


def _dfl_elementwise(
    log_p: torch.Tensor,
    y: torch.Tensor,
    alpha: float | torch.Tensor,
    beta: float,
    gamma: float,
    rho: float,
    eps: float,
) -> torch.Tensor:
    """Unweighted per-element terms (B, C, ...) from log-probabilities, with plain autograd ops."""
    p = log_p.exp()
    true_term = -y * log_p
    false_term = -beta * (1.0 - y) * torch.log(torch.clamp(rho - p, min=eps))
    focal_term = alpha * _focal_power((y - p).abs(), gamma)
    return true_term + false_term + focal_term


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


class _FusedDualFocal(torch.autograd.Function):
    """Softmax DFL with a closed-form backward. Returns the weighted sum, or the element-wise terms."""

    @staticmethod
    def forward(ctx, logits, y, weight, alpha, beta, gamma, rho, eps, reduce):  # noqa: D102
        # One exp and one log per element: p and log p from the same shifted logits.
        shifted = logits - logits.amax(1, keepdim=True)
        p = shifted.exp()
        norm = p.sum(1, keepdim=True)
        p.div_(norm)
        log_p = shifted.sub_(norm.log_())
        false_log = (rho - p).clamp_(min=eps).log_()
        focal = (y - p).abs_()
        if gamma != 1.0:
            focal.pow_(gamma)
        ctx.save_for_backward(p, y, weight, alpha if isinstance(alpha, torch.Tensor) else None)
        ctx.params = (alpha, beta, gamma, rho, eps)
        if reduce and weight is None:  # sums as dot products: no element-wise temporaries
            false_sum = false_log.sum() - _dot(false_log, y)
            return alpha * focal.sum() - beta * false_sum - _dot(y, log_p)
        # beta * (y - 1) * log(..) - y * log p + alpha * |y - p|^gamma, built in place.
        terms = false_log.addcmul_(false_log, y, value=-1.0).mul_(-beta)
        terms.addcmul_(y, log_p, value=-1.0)
        terms.add_(focal.mul_(alpha))
        if weight is not None:
            terms.mul_(weight)
        return terms.sum() if reduce else terms

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        p, y, weight, _ = ctx.saved_tensors
        alpha, beta, gamma, rho, eps = ctx.params
        scalar_grad = weight is None and grad_out.dim() == 0
        w = grad_out if weight is None else grad_out * weight  # W: broadcastable to p
        # d/dp of the false-class term: beta (1 - y) / (rho - p), zero where the clamp is active.
        r = rho - p
        clamped = r < eps
        h = r.reciprocal_()
        h.addcmul_(h, y, value=-1.0).masked_fill_(clamped, 0.0)
        if beta != 1.0:
            h.mul_(beta)
        diff = p - y
        h.add_(_focal_grad(diff, gamma), alpha=float(alpha))
        wy = y if scalar_grad else y * w
        if not scalar_grad:
            h.mul_(w)
        correction = wy.sum(1, keepdim=True) - (h * p).sum(1, keepdim=True)
        grad_logits = h.add_(correction).mul_(p).sub_(wy)
        if scalar_grad:
            grad_logits.mul_(w)
        grad_alpha = None
        if ctx.needs_input_grad[3]:
            grad_alpha = (_focal_power(diff.abs_(), gamma) * w).sum()
        return grad_logits, None, None, grad_alpha, None, None, None, None, None


def _focal_grad(diff: torch.Tensor, gamma: float) -> torch.Tensor:
    """d |p - y|^gamma / dp = gamma |p - y|^(gamma - 1) sign(p - y), 0 at p = y."""
    sign = diff.sign()
    if gamma == 1.0:
        return sign
    magnitude = diff.abs().clamp_(min=torch.finfo(diff.dtype).tiny).pow_(gamma - 1.0)
    return magnitude.mul_(sign).mul_(gamma)


class _FusedDualFocalLabels(torch.autograd.Function):
    """Softmax DFL summed over pixels, for hard labels B,1,spatial: no one-hot tensor, and the
    true-class terms are gathered per pixel, so most work is on B,1,spatial rather than B,C,spatial.

    With t the label, w the class weights and m the pixel mask, per pixel:
        m * [ -w_t log p_t - beta (sum_c w_c F_c - w_t F_t) + alpha (sum_c w_c p_c^g - w_t p_t^g + w_t (1 - p_t)^g) ]
    (F_c = log(max(rho - p_c, eps)), g = gamma); its gradient w.r.t. the logits is
        m * ( p (h - sum_c h_c p_c + w_t) - w_t onehot(t) ),
        h_c = w_c (beta [rho - p_c > eps] / (rho - p_c) + alpha g p_c^(g-1)) for c != t,  h_t = -w_t alpha g (1 - p_t)^(g-1).
    """

    @staticmethod
    def forward(ctx, logits, labels, class_weight, mask, alpha, beta, gamma, rho, eps):  # noqa: D102
        shifted = logits - logits.amax(1, keepdim=True)
        # The one gather: everything about the true class is then computed on B,1,spatial.
        shifted_t = shifted.gather(1, labels)
        p = shifted.exp_()  # in place: one fresh full-size buffer fewer
        norm = p.sum(1, keepdim=True)
        p.div_(norm)
        log_p_t = shifted_t.sub_(norm.log_())
        p_t = log_p_t.exp()
        w = None if class_weight is None else class_weight.reshape(1, -1, *([1] * (logits.dim() - 2)))
        w_t = 1.0 if class_weight is None else class_weight[labels]
        false_log = (rho - p).clamp_(min=eps).log_()
        false_px = _weighted_channel_sum(false_log, w) - w_t * (rho - p_t).clamp_(min=eps).log_()
        if gamma == 1.0 and w is None:  # sum_c p_c = 1
            focal_px = 2.0 * (1.0 - p_t)
        else:
            powered = p.pow(gamma)
            focal_px = _weighted_channel_sum(powered, w) - w_t * (p_t.pow(gamma) - (1.0 - p_t).pow(gamma))
        pixel = focal_px * alpha - false_px * beta - w_t * log_p_t
        if mask is not None:
            pixel, focal_px = pixel * mask, focal_px * mask
        ctx.save_for_backward(p, labels, p_t, class_weight, mask, focal_px.sum())
        ctx.params = (alpha, beta, gamma, rho, eps)
        return pixel.sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        p, labels, p_t, class_weight, mask, focal_total = ctx.saved_tensors
        alpha, beta, gamma, rho, eps = ctx.params
        alpha = float(alpha) if isinstance(alpha, torch.Tensor) else alpha
        w_t = 1.0 if class_weight is None else class_weight[labels]
        h = _wrong_class_grad(p, alpha, beta, gamma, rho, eps)  # the c != t formula, for every c
        if class_weight is not None:
            h.mul_(class_weight.reshape(1, -1, *([1] * (p.dim() - 2))))
        h_wrong_t = w_t * _wrong_class_grad(p_t.clone(), alpha, beta, gamma, rho, eps)
        tiny = torch.finfo(p.dtype).tiny
        h_t = -alpha * gamma * w_t * ((1.0 - p_t).clamp(min=tiny).pow(gamma - 1.0) if gamma != 1.0 else 1.0)
        h_p = (h * p).sum(1, keepdim=True) + (h_t - h_wrong_t) * p_t  # sum_c h_c p_c with the true h_t
        grad = h.sub_(h_p - w_t).mul_(p)  # right for c != t; then the true class, computed on B,1,spatial
        grad.scatter_(1, labels, p_t * (h_t - h_p + w_t) - w_t)
        grad.mul_(grad_out if mask is None else grad_out * mask)
        grad_alpha = grad_out * focal_total if ctx.needs_input_grad[4] else None
        return grad, None, None, None, grad_alpha, None, None, None, None


def _wrong_class_grad(p: torch.Tensor, alpha: float, beta: float, gamma: float, rho: float, eps: float):
    """d/dp of -beta log(max(rho - p, eps)) + alpha p^gamma (in place on a fresh tensor from p)."""
    # 1 / (rho - p), 0 where the clamp at eps is active (threshold to inf, then 1/inf = 0)
    h = F.threshold_(rho - p, eps, float("inf")).reciprocal_()
    if beta != 1.0:
        h.mul_(beta)
    if gamma == 1.0:
        return h.add_(alpha)
    return h.add_(p.clamp(min=torch.finfo(p.dtype).tiny).pow_(gamma - 1.0), alpha=alpha * gamma)


def _weighted_channel_sum(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return x.sum(1, keepdim=True) if w is None else (x * w).sum(1, keepdim=True)


def _softmax_terms(logits, y, weight, alpha, beta, gamma, rho, eps, reduce, fused) -> torch.Tensor:
    if fused:
        return _FusedDualFocal.apply(logits, y, weight, alpha, beta, gamma, rho, eps, reduce)
    terms = _dfl_elementwise(torch.log_softmax(logits, dim=1), y, alpha, beta, gamma, rho, eps)
    if weight is not None:
        terms = terms * weight
    return terms.sum() if reduce else terms


def _pixel_weight(
    weight: torch.Tensor | None, mask: torch.Tensor | None, ndim: int, dtype: torch.dtype
) -> torch.Tensor | None:
    """Combine per-class weights (C,) and a pixel mask (B, 1, ...) into one broadcastable tensor."""
    combined = None
    if weight is not None:
        combined = weight.to(dtype).reshape(1, -1, *([1] * (ndim - 2)))
    if mask is not None:
        mask = mask.to(dtype)
        combined = mask if combined is None else combined * mask
    return combined


def _check_call(input: torch.Tensor, target: torch.Tensor, activation: str, reduction: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    if input.dim() < 3:
        raise ValueError(f"input must be B,C,spatial (at least 3 dims), got shape {tuple(input.shape)}.")
    if target.shape != input.shape and not _is_label_map(input, target):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)} "
            f"(one-hot or soft target), or be {(input.shape[0], 1, *input.shape[2:])} integer labels."
        )


def _is_label_map(input: torch.Tensor, target: torch.Tensor) -> bool:
    return not target.is_floating_point() and target.shape == (input.shape[0], 1, *input.shape[2:])


def dual_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float | torch.Tensor = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    rho: float = 1.0,
    eps: float = 1e-3,
    weight: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    activation: str = "softmax",
    reduction: str = "mean",
    fused: bool = True,
    compiled: bool | None = None,
) -> torch.Tensor:
    """Dual Focal Loss of logits against a one-hot (or soft) target, or integer labels.

    Args:
        input: logits B,C,spatial (probabilities when ``activation="none"``).
        target: B,C,spatial, one-hot or soft labels in [0, 1]; or B,1,spatial integer class indices
            in [0, C) (the fastest path for softmax with a reduction: no one-hot tensor is built).
        alpha, beta, gamma, rho, eps: the spec's parameters; ``alpha`` may be a 0-dim tensor that
            requires grad (the learnable scale).
        weight: per-class weights, shape (C,).
        mask: B,1,spatial, 1 where a pixel counts and 0 where it is ignored.
        activation: "softmax" (classes compete), "sigmoid" (each channel is its own two-class
            problem (1 - p, p)), or "none" (input already holds probabilities; plain path only).
        reduction: "mean" = mean over (unmasked) pixels of the sum over classes; "sum"; "none" =
            element-wise terms B,C,spatial (masked pixels are 0), so ``.sum(1).mean()`` = "mean".
        fused: use the closed-form-gradient kernel (same values as the plain autograd path).
        compiled: softmax with a reduction only: run the ``torch.compile``d kernels of
            ``losses/compiled.py`` (a few fused loops instead of ~60 operator passes). None (default):
            when the input has at least 2**18 elements and needs a gradient; True: always; False:
            never. Compilation happens on first use (logged; seconds) and falls back to the eager
            fused path, with one warning, where it is unavailable or fails.

    Computation runs in float32 (float64 stays float64), outside any autocast region.
    """
    _check_call(input, target, activation, reduction)
    with torch.autocast(device_type=input.device.type, enabled=False):
        dtype = torch.promote_types(input.dtype, torch.float32)
        logits, reduce = input.to(dtype), reduction != "none"
        params = (alpha, beta, gamma, rho, eps)
        labels = _is_label_map(input, target) and input.shape[1] > 1
        if activation == "softmax" and reduce and fused and (labels or target.shape == input.shape):
            # B,C,N views: broadcasting over the channels is ~2x faster than in 4D/5D on CPU.
            y = target.long() if labels else target.to(dtype)
            flat = [None if t is None else t.reshape(*t.shape[:2], -1) for t in (logits, y, _as(mask, dtype))]
            out = _fused_sum(flat[0], flat[1], _as(weight, dtype), flat[2], params, compiled)
            return out / _pixel_count(logits, mask) if reduction == "mean" else out
        if labels:
            target = torch.zeros_like(logits).scatter_(1, target.long(), 1.0)
        out = _onehot_terms(logits, target.to(dtype), _pixel_weight(weight, mask, logits.dim(), dtype), params,
                            activation, reduce, fused)  # fmt: skip
        return out / _pixel_count(logits, mask) if reduction == "mean" else out


def _fused_sum(logits, target, class_weight, mask, params, compiled: bool | None) -> torch.Tensor:
    """Softmax DFL summed over pixels (labels B,1,N or one-hot B,C,N): compiled kernels or eager fused."""

    def eager() -> torch.Tensor:
        if not target.is_floating_point():
            return _FusedDualFocalLabels.apply(logits, target, class_weight, mask, *params)
        weight = _pixel_weight(class_weight, mask, logits.dim(), logits.dtype)
        return _FusedDualFocal.apply(logits, target, weight, *params, True)

    if worth_compiling(logits, compiled):
        return compiled_dual_focal(logits, target, class_weight, mask, params, fallback=eager)
    return eager()


def _onehot_terms(logits, y, pixel_weight, params, activation: str, reduce: bool, fused: bool) -> torch.Tensor:
    if activation == "softmax":
        return _softmax_terms(logits, y, pixel_weight, *params, reduce, fused)
    if activation == "sigmoid":
        return _sigmoid_terms(logits, y, pixel_weight, params, reduce, fused)
    log_p = torch.log(torch.clamp(logits, min=params[-1]))  # probabilities given: the authors' clamp at eps
    out = _dfl_elementwise(log_p, y, *params)
    out = out if pixel_weight is None else out * pixel_weight
    return out.sum() if reduce else out


def _pixel_count(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | int:
    return logits[:, :1].numel() if mask is None else mask.to(logits.dtype).sum().clamp(min=1.0)


def _as(x: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if x is None else x.to(dtype)


def _sigmoid_terms(logits, y, pixel_weight, params, reduce, fused) -> torch.Tensor:
    """Per-channel binary DFL: channel c is the two-class softmax over (0, z_c) with target (1 - y_c, y_c)."""
    two_logits = torch.stack((torch.zeros_like(logits), logits), dim=1)  # B,2,C,spatial
    two_y = torch.stack((1.0 - y, y), dim=1)
    weight = None if pixel_weight is None else pixel_weight.unsqueeze(1)
    out = _softmax_terms(two_logits, two_y, weight, *params, reduce, fused)
    return out if reduce else out.sum(1)
