"""The compiled-kernel path (losses/compiled.py): the same math as the plain autograd reference,
run uncompiled (every parameter combination, float64 gradcheck) and compiled (slow: Inductor needs a
C++ compiler and seconds per kernel), and the fallback when compilation fails."""

import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch

from medseg_dfl.losses import DualFocalLoss, compiled, dual_focal_loss
from medseg_dfl.losses.compiled import KERNELS_EAGER, CompiledDualFocal, Kernels


def _case(labels_target: bool, weighted: bool, dtype=torch.float64, shape=(2, 3, 5, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=gen, dtype=dtype) * 3).requires_grad_()
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=gen)
    onehot = torch.zeros(shape, dtype=dtype).scatter_(1, labels, 1.0)
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=dtype) if weighted else None
    mask = (torch.rand((shape[0], 1, *shape[2:]), generator=gen) > 0.3).to(dtype) if weighted else None
    return logits, (labels if labels_target else onehot), onehot, weight, mask


def _flat(t):
    return None if t is None else t.reshape(*t.shape[:2], -1)


@pytest.mark.parametrize("labels_target", [True, False])
@pytest.mark.parametrize("gamma", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("unrolled", [True, False])
def test_kernels_uncompiled_match_plain_reference_and_gradcheck(labels_target, gamma, weighted, unrolled, monkeypatch):
    """Both forms: per channel (C <= MAX_UNROLLED_CLASSES) and over B,C,N (more classes)."""
    if not unrolled:
        monkeypatch.setattr(compiled, "MAX_UNROLLED_CLASSES", 0)
    logits, target, onehot, weight, mask = _case(labels_target, weighted)
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    params = dict(beta=0.8, gamma=gamma, rho=1.2, eps=1e-3)

    def kernel_sum(z, a):
        return CompiledDualFocal.apply(_flat(z), _flat(target), weight, _flat(mask), a, *params.values(), KERNELS_EAGER)

    assert torch.autograd.gradcheck(kernel_sum, (logits, alpha))
    ours = kernel_sum(logits, alpha)
    reference = dual_focal_loss(logits, onehot, alpha=alpha, weight=weight, mask=mask, reduction="sum",
                                fused=False, **params)  # fmt: skip
    torch.testing.assert_close(ours, reference)
    for a, b in zip(torch.autograd.grad(ours, (logits, alpha)), torch.autograd.grad(reference, (logits, alpha)), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("scale", [50.0, 1e4])
@pytest.mark.parametrize("labels_target", [True, False])
@pytest.mark.parametrize("unrolled", [True, False])
def test_kernels_extreme_logits_are_finite_and_match(scale, labels_target, unrolled, monkeypatch):
    if not unrolled:
        monkeypatch.setattr(compiled, "MAX_UNROLLED_CLASSES", 0)
    labels = torch.randint(0, 3, (2, 1, 6, 6))
    onehot = torch.zeros(2, 3, 6, 6).scatter_(1, labels, 1.0)
    target = labels if labels_target else onehot
    for sign in (1.0, -1.0):  # confidently right, confidently wrong
        logits = (sign * (2 * onehot - 1) * scale).requires_grad_()
        ours = CompiledDualFocal.apply(_flat(logits), _flat(target), None, None, 1.0, 1.0, 1.0, 1.0, 1e-3, KERNELS_EAGER)
        reference = dual_focal_loss(logits, onehot, reduction="sum", fused=False)
        torch.testing.assert_close(ours, reference)
        grad, expected = torch.autograd.grad(ours, logits)[0], torch.autograd.grad(reference, logits)[0]
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, expected)


def test_auto_compiles_only_large_inputs(monkeypatch):
    calls = []
    monkeypatch.setattr("medseg_dfl.losses.functional.compiled_dual_focal", lambda *a, **k: calls.append(1) or a[4][0])
    small = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 1, 8, 8))
    dual_focal_loss(small, labels)
    assert calls == []
    dual_focal_loss(small, labels, compiled=True)
    assert calls == [1]
    large = torch.empty(4, 4, 128, 128, requires_grad=True)  # 2**18 elements
    assert compiled.worth_compiling(large, None) and not compiled.worth_compiling(large, False)
    with torch.no_grad():  # validation: not compiled unless asked for
        assert not compiled.worth_compiling(large, None) and compiled.worth_compiling(large, True)
    assert not compiled.worth_compiling(large.detach(), None)


class _Broken(Exception):
    pass


def _raise(*args, **kwargs):
    raise _Broken("no C++ compiler here")


@pytest.mark.parametrize("broken", ["forward", "backward"])
def test_compile_failure_warns_once_and_falls_back(monkeypatch, broken, caplog):
    kernels = Kernels(name="compiled")
    if broken == "forward":
        kernels.label_forward = _raise
    else:
        kernels.label_backward = _raise
    monkeypatch.setattr(compiled, "_compiled", [kernels])
    logits, labels, onehot, weight, mask = _case(True, True, dtype=torch.float32)
    expected = dual_focal_loss(logits, onehot, weight=weight, mask=mask, fused=False)
    expected_grad = torch.autograd.grad(expected, logits)[0]
    with caplog.at_level(logging.WARNING), pytest.warns(RuntimeWarning, match="no C..? compiler here|_Broken"):
        loss = dual_focal_loss(logits, labels, weight=weight, mask=mask, compiled=True)
        grad = torch.autograd.grad(loss, logits)[0]
    assert "compiling the fused Dual Focal Loss" in caplog.text
    assert kernels.failed
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    with warnings.catch_warnings():  # no second warning, no retry
        warnings.simplefilter("error")
        again = dual_focal_loss(logits, labels, weight=weight, mask=mask, compiled=True)
    torch.testing.assert_close(again, expected)


def test_import_and_use_change_no_process_settings():
    code = (
        "import os, torch; threads = torch.get_num_threads()\n"
        "from medseg_dfl.losses import DualFocalLoss\n"
        "x = torch.randn(2, 3, 8, 8, requires_grad=True)\n"
        "DualFocalLoss(to_onehot_y=True)(x, torch.randint(0, 3, (2, 1, 8, 8))).backward()\n"
        "assert torch.get_num_threads() == threads, 'threads changed'\n"
        "assert not any(k.startswith(('OMP_', 'KMP_', 'MKL_')) for k in os.environ), 'env changed'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "KMP_", "MKL_"))}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("labels_target", [True, False])
def test_really_compiled_matches_plain_reference(labels_target):
    """Inductor (C++ on CPU): values and gradients against the plain path; float64 gradcheck."""
    logits, target, onehot, weight, mask = _case(labels_target, True, dtype=torch.float32, shape=(2, 3, 16, 16))
    alpha = torch.tensor(0.7, requires_grad=True)
    kw = dict(beta=0.8, gamma=2.0, rho=1.2, weight=weight, mask=mask)
    ours = dual_focal_loss(logits, target, alpha=alpha, compiled=True, **kw)
    reference = dual_focal_loss(logits, onehot, alpha=alpha, fused=False, **kw)
    assert not compiled.compiled_kernels().failed, "torch.compile is not working on this machine"
    torch.testing.assert_close(ours, reference)
    for a, b in zip(torch.autograd.grad(ours, (logits, alpha)), torch.autograd.grad(reference, (logits, alpha)), strict=True):
        torch.testing.assert_close(a, b)
    z64 = logits.detach().double().requires_grad_()
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    target64 = target if labels_target else target.double()
    assert torch.autograd.gradcheck(lambda z: dual_focal_loss(z, target64, compiled=True, **kw64), (z64,))


@pytest.mark.slow
def test_module_default_compiles_large_inputs_and_matches_eager():
    from monai.data import MetaTensor

    torch.manual_seed(0)
    # 2**18 elements: auto compiles; MetaTensors, as a MONAI pipeline hands them over
    logits = MetaTensor(torch.randn(4, 4, 128, 128)).requires_grad_()
    labels = MetaTensor(torch.randint(0, 4, (4, 1, 128, 128)))
    auto, eager = DualFocalLoss(to_onehot_y=True), DualFocalLoss(to_onehot_y=True, compiled=False)
    out_auto, out_eager = auto(logits, labels), eager(logits, labels)
    assert not compiled.compiled_kernels().failed
    torch.testing.assert_close(out_auto, out_eager)
    torch.testing.assert_close(torch.autograd.grad(out_auto, logits)[0], torch.autograd.grad(out_eager, logits)[0])


@pytest.mark.parametrize("to_onehot_y", [True, False])
def test_module_passes_compiled_through(monkeypatch, to_onehot_y):
    """DualFocalLoss(compiled=True) reaches the kernels (here uncompiled, so the test is fast), with
    ACW weights and ignore_index, and gives the eager module's values and gradients."""
    calls = []

    class Spy(Kernels):
        def __init__(self):
            super().__init__(name="compiled")
            forward = self.label_forward if to_onehot_y else self.onehot_forward
            setattr(self, "label_forward" if to_onehot_y else "onehot_forward", lambda *a: calls.append(1) or forward(*a))

    monkeypatch.setattr(compiled, "_compiled", [Spy()])
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 5, requires_grad=True)
    labels = torch.randint(0, 4, (2, 1, 6, 5))
    target = labels if to_onehot_y else torch.zeros(2, 4, 6, 5).scatter_(1, labels, 1.0)
    kw = dict(to_onehot_y=to_onehot_y, adaptive_weights=True, num_classes=4, gamma=2.0, ignore_index=3)
    ours = DualFocalLoss(compiled=True, **kw)(logits, target)
    eager = DualFocalLoss(compiled=False, **kw)(logits, target)
    assert calls == [1]
    torch.testing.assert_close(ours, eager)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(eager, logits)[0])
