"""The softmax Dual Focal Loss as a few fused kernels: ``torch.compile`` of a label-gather form.

The eager paths in ``functional.py`` run one ATen operator per step, each a pass over the B,C,spatial
tensor (and on CPU an OpenMP region whose barrier spins while another process holds a core). Here
the same math is written as four pure functions, two per target kind (integer labels B,1,N or a
one-hot/soft target B,C,N), that ``torch.compile`` turns into one loop over the pixels each (up to
16 classes the channels are unrolled and a pixel's C values stay in registers; with more classes a
B,C,N form takes two or three loops):

- forward: log p = z - logsumexp(z); the per-element terms with the true class picked by
  ``class == label`` (no one-hot tensor), summed into (non-focal sum, focal sum); keeps only the
  per-pixel log-normaliser (B,1,N) for the backward;
- backward: p recomputed from z and the log-normaliser, then the closed-form gradient of
  ``functional.py`` (``dz_j = p_j (h_j - sum_c h_c p_c + sum_c W_c y_c) - W_j y_j``).

Run uncompiled, the functions are ordinary tensor code (the tests check them both ways against the
plain autograd reference). Compilation is lazy (first call of a large enough tensor), logged once
because it takes seconds, cached on disk by Inductor for later processes, and any failure (no C++
compiler, an unsupported platform or device) is reported once with a warning, after which the eager
fused path is used for the rest of the process. Nothing here changes process-wide settings.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch

__all__ = ["CompiledDualFocal", "KERNELS_EAGER", "Kernels", "compiled_kernels", "worth_compiling"]

_log = logging.getLogger(__name__)

# Below this many logits the eager fused path is already fast and compiling (seconds) cannot pay off.
MIN_COMPILE_NUMEL = 1 << 18


def _log_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p, log of the softmax normaliser of the max-shifted logits): the two-step form keeps
    log p exact where z - logsumexp(z) would lose digits to large logits."""
    shifted = logits - logits.amax(1, keepdim=True)
    log_norm = shifted.exp().sum(1, keepdim=True).log()
    return shifted - log_norm, log_norm


def _probabilities(logits: torch.Tensor, log_norm: torch.Tensor) -> torch.Tensor:
    return (logits - logits.amax(1, keepdim=True) - log_norm).exp()


def _class_index(logits: torch.Tensor) -> torch.Tensor:
    return torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1)


def _weighted(x: torch.Tensor, class_weight: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    if class_weight is not None:
        x = x * class_weight.view(1, -1, 1)
    return x if mask is None else x * mask


def _pow(x: torch.Tensor, exponent: float) -> torch.Tensor:
    return x if exponent == 1.0 else x.pow(exponent)


def _pow_grad(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma x^(gamma - 1) for x >= 0, with x clamped away from 0 (finite for gamma < 1)."""
    if gamma == 1.0:
        return torch.ones_like(x)
    return x.clamp(min=torch.finfo(x.dtype).tiny).pow(gamma - 1.0) * gamma


def _false_grad(p: torch.Tensor, beta: float, rho: float, eps: float) -> torch.Tensor:
    """d/dp of -beta log(max(rho - p, eps)): beta / (rho - p), 0 where the clamp is active."""
    r = rho - p
    return torch.where(r >= eps, beta / r, torch.zeros_like(r))


def _label_forward_tensor(logits, labels, class_weight, mask, beta: float, gamma: float, rho: float, eps: float):
    """(sum of CE + false-class terms, sum of focal terms, log-normaliser B,1,N) for labels B,1,N."""
    log_p, log_norm = _log_softmax(logits)
    p = log_p.exp()
    is_true = _class_index(logits) == labels
    false_log = (rho - p).clamp(min=eps).log()
    base = torch.where(is_true, -log_p, -beta * false_log)
    focal = _pow(torch.where(is_true, 1.0 - p, p), gamma)
    return _weighted(base, class_weight, mask).sum(), _weighted(focal, class_weight, mask).sum(), log_norm


def _label_backward_tensor(logits, labels, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps):
    """d loss / d logits for ``label_forward`` scaled by grad_out (0-dim), alpha a 0-dim tensor."""
    p = _probabilities(logits, log_norm)
    is_true = _class_index(logits) == labels
    h_true = -alpha * _pow_grad(1.0 - p, gamma)
    h_false = _false_grad(p, beta, rho, eps) + alpha * _pow_grad(p, gamma)
    h = _weighted(torch.where(is_true, h_true, h_false), class_weight, None)
    if class_weight is None:
        w_true = 1.0
    else:
        w_true = torch.where(is_true, class_weight.view(1, -1, 1), 0.0).sum(1, keepdim=True)
    h_p = (h * p).sum(1, keepdim=True)
    grad = p * (h - h_p + w_true) - torch.where(is_true, w_true, 0.0)
    return grad * (grad_out if mask is None else grad_out * mask)


def _onehot_forward_tensor(logits, target, class_weight, mask, beta: float, gamma: float, rho: float, eps: float):
    """As ``label_forward`` for a one-hot or soft target B,C,N."""
    log_p, log_norm = _log_softmax(logits)
    p = log_p.exp()
    false_log = (rho - p).clamp(min=eps).log()
    base = -target * log_p - beta * (1.0 - target) * false_log
    focal = _pow((target - p).abs(), gamma)
    return _weighted(base, class_weight, mask).sum(), _weighted(focal, class_weight, mask).sum(), log_norm


def _onehot_backward_tensor(logits, target, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps):
    """d loss / d logits for ``onehot_forward`` scaled by grad_out (0-dim), alpha a 0-dim tensor."""
    p = _probabilities(logits, log_norm)
    diff = p - target
    h = (1.0 - target) * _false_grad(p, beta, rho, eps) + alpha * _pow_grad(diff.abs(), gamma) * diff.sign()
    h = _weighted(h, class_weight, None)
    wy = _weighted(target, class_weight, None)
    grad = p * (h - (h * p).sum(1, keepdim=True) + wy.sum(1, keepdim=True)) - wy
    return grad * (grad_out if mask is None else grad_out * mask)


# Per channel, unrolled: C tensors of B,N instead of one B,C,N. Inductor then emits one loop over the
# pixels that keeps a pixel's C values in registers: one pass per direction, about as many as
# cross entropy makes (twice as fast as the B,C,N form above at C = 4). Used up to MAX_UNROLLED_CLASSES.
MAX_UNROLLED_CLASSES = 16


def _channel_softmax(logits: torch.Tensor):
    """Per channel: max-shifted logits, their exp, and per pixel 1 / sum exp and log sum exp."""
    z = logits.unbind(1)
    top = z[0]
    for zc in z[1:]:
        top = torch.maximum(top, zc)
    shifted = [zc - top for zc in z]
    e = [s.exp() for s in shifted]
    total = e[0]
    for ec in e[1:]:
        total = total + ec
    return shifted, e, 1.0 / total, total.log()


def _channel_probabilities(logits: torch.Tensor, log_norm: torch.Tensor) -> list[torch.Tensor]:
    z = logits.unbind(1)
    top = z[0]
    for zc in z[1:]:
        top = torch.maximum(top, zc)
    return [(zc - top - log_norm[:, 0]).exp() for zc in z]


def _reduce_unrolled(base_terms, focal_terms, class_weight, mask):
    base = focal = 0.0
    for c, (b, f) in enumerate(zip(base_terms, focal_terms, strict=True)):
        if class_weight is not None:
            b, f = b * class_weight[c], f * class_weight[c]
        base, focal = base + b, focal + f
    if mask is not None:
        base, focal = base * mask[:, 0], focal * mask[:, 0]
    return base.sum(), focal.sum()


def _label_forward_unrolled(logits, labels, class_weight, mask, beta, gamma, rho, eps):
    shifted, e, inv, log_norm = _channel_softmax(logits)
    t = labels[:, 0]
    base, focal = [], []
    for c in range(len(e)):
        is_true, p = t == c, e[c] * inv
        base.append(torch.where(is_true, log_norm - shifted[c], -beta * (rho - p).clamp(min=eps).log()))
        focal.append(_pow(torch.where(is_true, 1.0 - p, p), gamma))
    return (*_reduce_unrolled(base, focal, class_weight, mask), log_norm.unsqueeze(1))


def _label_backward_unrolled(logits, labels, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps):
    p, t = _channel_probabilities(logits, log_norm), labels[:, 0]
    h, h_p, w_true = [], 0.0, 1.0 if class_weight is None else 0.0
    for c in range(len(p)):
        is_true = t == c
        h_c = torch.where(is_true, -alpha * _pow_grad(1.0 - p[c], gamma),
                          _false_grad(p[c], beta, rho, eps) + alpha * _pow_grad(p[c], gamma))  # fmt: skip
        if class_weight is not None:
            h_c = h_c * class_weight[c]
            w_true = w_true + torch.where(is_true, class_weight[c], 0.0)
        h.append(h_c)
        h_p = h_p + h_c * p[c]
    scale = grad_out if mask is None else grad_out * mask[:, 0]
    grads = [(p[c] * (h[c] - h_p + w_true) - torch.where(t == c, w_true, 0.0)) * scale for c in range(len(p))]
    return torch.stack(grads, 1)


def _onehot_forward_unrolled(logits, target, class_weight, mask, beta, gamma, rho, eps):
    shifted, e, inv, log_norm = _channel_softmax(logits)
    y = target.unbind(1)
    base, focal = [], []
    for c in range(len(e)):
        p = e[c] * inv
        base.append(y[c] * (log_norm - shifted[c]) - beta * (1.0 - y[c]) * (rho - p).clamp(min=eps).log())
        focal.append(_pow((y[c] - p).abs(), gamma))
    return (*_reduce_unrolled(base, focal, class_weight, mask), log_norm.unsqueeze(1))


def _onehot_backward_unrolled(logits, target, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps):
    p, y = _channel_probabilities(logits, log_norm), target.unbind(1)
    h, wy, h_p, wy_sum = [], [], 0.0, 0.0
    for c in range(len(p)):
        diff = p[c] - y[c]
        h_c = (1.0 - y[c]) * _false_grad(p[c], beta, rho, eps) + alpha * _pow_grad(diff.abs(), gamma) * diff.sign()
        wy_c = y[c]
        if class_weight is not None:
            h_c, wy_c = h_c * class_weight[c], wy_c * class_weight[c]
        h.append(h_c)
        wy.append(wy_c)
        h_p, wy_sum = h_p + h_c * p[c], wy_sum + wy_c
    scale = grad_out if mask is None else grad_out * mask[:, 0]
    return torch.stack([(p[c] * (h[c] - h_p + wy_sum) - wy[c]) * scale for c in range(len(p))], 1)


def _unrolled(logits: torch.Tensor) -> bool:
    return logits.shape[1] <= MAX_UNROLLED_CLASSES


def label_forward(logits, labels, class_weight, mask, beta: float, gamma: float, rho: float, eps: float):
    """(sum of CE + false-class terms, sum of focal terms, log-normaliser B,1,N) for labels B,1,N."""
    forward = _label_forward_unrolled if _unrolled(logits) else _label_forward_tensor
    return forward(logits, labels, class_weight, mask, beta, gamma, rho, eps)


def label_backward(logits, labels, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps):
    """d loss / d logits for ``label_forward`` scaled by grad_out (0-dim); alpha a 0-dim tensor."""
    backward = _label_backward_unrolled if _unrolled(logits) else _label_backward_tensor
    return backward(logits, labels, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps)


def onehot_forward(logits, target, class_weight, mask, beta: float, gamma: float, rho: float, eps: float):
    """As ``label_forward`` for a one-hot or soft target B,C,N."""
    forward = _onehot_forward_unrolled if _unrolled(logits) else _onehot_forward_tensor
    return forward(logits, target, class_weight, mask, beta, gamma, rho, eps)


def onehot_backward(logits, target, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps):
    """As ``label_backward`` for a one-hot or soft target B,C,N."""
    backward = _onehot_backward_unrolled if _unrolled(logits) else _onehot_backward_tensor
    return backward(logits, target, log_norm, class_weight, mask, grad_out, alpha, beta, gamma, rho, eps)


class Kernels:
    """The four kernel functions, compiled or not; ``failed`` once compilation has failed here."""

    def __init__(self, wrap: Callable[[Callable], Callable] | None = None, name: str = "eager") -> None:
        self.name = name
        self.failed = False
        self.announced = False
        functions = (label_forward, label_backward, onehot_forward, onehot_backward)
        wrapped = functions if wrap is None else tuple(wrap(f) for f in functions)
        self.label_forward, self.label_backward, self.onehot_forward, self.onehot_backward = wrapped


KERNELS_EAGER = Kernels()
_compiled: list[Kernels] = []  # the one compiled set, created on first use (torch.compile is not free)


def compiled_kernels() -> Kernels:
    """The process's compiled kernels (created lazily; ``dynamic=None``: a new shape recompiles once)."""
    if not _compiled:
        _compiled.append(Kernels(lambda f: torch.compile(f, fullgraph=True), name="compiled"))
    return _compiled[0]


def worth_compiling(logits: torch.Tensor, compiled: bool | None) -> bool:
    """compiled=None (auto): large inputs that need a gradient (training steps: validation under
    no_grad, often on whole images of varying size, would only add compilations); never inside an
    outer torch.compile trace."""
    if compiled is False or torch.compiler.is_compiling():
        return False
    if compiled is True:
        return True
    return logits.numel() >= MIN_COMPILE_NUMEL and logits.requires_grad and torch.is_grad_enabled()


class CompiledDualFocal(torch.autograd.Function):
    """Softmax DFL summed over pixels; ``kernels`` decides compiled or eager; labels or one-hot target."""

    @staticmethod
    def forward(ctx, logits, target, class_weight, mask, alpha, beta, gamma, rho, eps, kernels):  # noqa: D102
        forward = kernels.label_forward if _is_labels(target) else kernels.onehot_forward
        base, focal, log_norm = forward(logits, target, class_weight, mask, beta, gamma, rho, eps)
        ctx.save_for_backward(logits, target, log_norm, class_weight, mask, focal)
        ctx.params = (alpha.detach() if isinstance(alpha, torch.Tensor) else alpha, beta, gamma, rho, eps, kernels)
        return base + alpha * focal

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        logits, target, log_norm, class_weight, mask, focal = ctx.saved_tensors
        alpha, beta, gamma, rho, eps, kernels = ctx.params
        args = (logits, target, log_norm, class_weight, mask, grad_out,
                torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device), beta, gamma, rho, eps)  # fmt: skip
        try:
            grad = _backward_of(kernels, target)(*args)
        except Exception as error:  # compiling the backward failed: the same math, uncompiled
            if kernels is KERNELS_EAGER:
                raise
            _give_up(kernels, error, stacklevel=2)
            grad = _backward_of(KERNELS_EAGER, target)(*args)
        grad_alpha = grad_out * focal if ctx.needs_input_grad[4] else None
        return grad, None, None, None, grad_alpha, None, None, None, None, None


def _backward_of(kernels: Kernels, target: torch.Tensor) -> Callable:
    return kernels.label_backward if _is_labels(target) else kernels.onehot_backward


def _give_up(kernels: Kernels, error: Exception, stacklevel: int) -> None:
    kernels.failed = True
    warnings.warn(
        f"torch.compile of the Dual Focal Loss failed ({type(error).__name__}: {str(error)[:300]}); "
        "using the eager fused path for the rest of this process.",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )


def _is_labels(target: torch.Tensor) -> bool:
    return not target.is_floating_point()


def compiled_dual_focal(logits, target, class_weight, mask, params, fallback: Callable[[], torch.Tensor]):
    """Run the compiled kernels; on the first failure warn once and use ``fallback`` from then on."""
    kernels = compiled_kernels()
    if kernels.failed:
        return fallback()
    if not kernels.announced:
        kernels.announced = True
        _log.warning(
            "medseg_dfl: compiling the fused Dual Focal Loss kernels with torch.compile (first large "
            "input in this process: seconds, reused from Inductor's on-disk cache later; compiled=False skips it)"
        )
    # Tensor subclasses (MONAI's MetaTensor from a MONAI pipeline) cannot be traced: plain aliases
    # of the same memory, still attached to the autograd graph.
    logits, target, class_weight, mask = (_plain(t) for t in (logits, target, class_weight, mask))
    try:
        return CompiledDualFocal.apply(logits, target, class_weight, mask, *params, kernels)
    except Exception as error:  # any compiler/platform failure: the eager path computes the same values
        _give_up(kernels, error, stacklevel=4)
        return fallback()


def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or type(t) is torch.Tensor else t.as_subclass(torch.Tensor)
