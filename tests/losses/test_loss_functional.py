"""dual_focal_loss: hand-worked values, equivalences, gradients, shapes and numerical edge cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from medseg_dfl.losses import dual_focal_loss


def onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """labels B,spatial -> one-hot B,C,spatial (float)."""
    return torch.zeros(labels.shape[0], num_classes, *labels.shape[1:]).scatter_(1, labels.unsqueeze(1), 1.0)


def two_pixels():
    # Pixel 1: logits (0, 0) -> p = (0.5, 0.5); pixel 2: logits (log 3, 0) -> p = (0.75, 0.25). Both class 0.
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])  # B=1, C=2, W=2
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    return logits, target


@pytest.mark.parametrize("fused", [True, False])
def test_golden_defaults(fused):
    logits, target = two_pixels()
    # Pixel 1: -log .5 (true) - log(1 - .5) (false class) + |1-.5| + |0-.5| = 2 ln 2 + 1 = 2.386294
    # Pixel 2: -log .75 - log(1 - .25) + .25 + .25 = 2 * 0.287682 + 0.5 = 1.075364
    loss = dual_focal_loss(logits, target, fused=fused, reduction="none")
    assert loss.shape == (1, 2, 2)
    torch.testing.assert_close(loss.sum(1), torch.tensor([[2.386294, 1.075364]]), atol=1e-5, rtol=0)
    mean = dual_focal_loss(logits, target, fused=fused)
    assert mean.item() == pytest.approx((2.386294 + 1.075364) / 2, abs=1e-5)  # 1.730829
    assert dual_focal_loss(logits, target, fused=fused, reduction="sum").item() == pytest.approx(3.461658, abs=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_golden_parameters(fused):
    logits, target = two_pixels()
    # Pixel 2 with alpha=2, beta=.5, gamma=2, rho=1.5:
    # -log .75 = 0.287682; -.5 * log(1.5 - .25) = -0.111572; 2 * (.25^2 + .25^2) = 0.25 -> 0.426110
    loss = dual_focal_loss(logits, target, alpha=2.0, beta=0.5, gamma=2.0, rho=1.5, reduction="none", fused=fused)
    assert loss.sum(1)[0, 1].item() == pytest.approx(0.426110, abs=1e-5)
    # Class weights (2, 3): pixel 2 = 2 * (0.287682 + .25) + 3 * (0.287682 + .25) = 2.688410
    weighted = dual_focal_loss(logits, target, weight=torch.tensor([2.0, 3.0]), reduction="none", fused=fused)
    assert weighted.sum(1)[0, 1].item() == pytest.approx(2.688410, abs=1e-5)


def test_eps_clamp_matches_authors():
    # p_wrong = 1 - 1e-6 > 1 - eps: log(rho - p) is clamped at log(1e-3): false term = -log(1e-3) = 6.907755.
    logits = torch.tensor([[[0.0], [math.log(1e6 - 1)]]])
    target = torch.tensor([[[1.0], [0.0]]])
    loss = dual_focal_loss(logits, target, alpha=0.0, reduction="none")
    assert loss[0, 1, 0].item() == pytest.approx(-math.log(1e-3), rel=1e-4)


@pytest.mark.parametrize("shape", [(2, 4, 6, 5), (2, 3, 4, 3, 5)])
@pytest.mark.parametrize("fused", [True, False])
def test_alpha_beta_zero_is_cross_entropy(shape, fused):
    torch.manual_seed(0)
    logits = torch.randn(shape) * 3
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    loss = dual_focal_loss(logits, onehot(labels, shape[1]), alpha=0.0, beta=0.0, fused=fused)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))


@pytest.mark.parametrize("fused", [True, False])
def test_defaults_are_bce_on_softmax_plus_twice_error(fused):
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 5, 4)  # moderate logits: the eps clamp is not active
    labels = torch.randint(0, 3, (2, 5, 4))
    y = onehot(labels, 3)
    p = logits.softmax(1)
    bce = F.binary_cross_entropy(p, y, reduction="none").sum(1)
    p_true = (p * y).sum(1)
    expected = (bce + 2 * (1 - p_true)).mean()
    torch.testing.assert_close(dual_focal_loss(logits, y, fused=fused), expected)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("gamma", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_and_fused_matches_plain(activation, gamma, reduction):
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    y = onehot(torch.randint(0, 3, (2, 4, 3)), 3).double()
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    mask = (torch.rand(2, 1, 4, 3) > 0.3).double()
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    kw = dict(gamma=gamma, beta=0.8, rho=1.2, weight=weight, mask=mask, activation=activation, reduction=reduction)

    def f(z, a, fused=True):
        return dual_focal_loss(z, y, alpha=a, fused=fused, **kw)

    assert torch.autograd.gradcheck(f, (logits, alpha))
    out_fused, out_plain = f(logits, alpha), f(logits, alpha, fused=False)
    torch.testing.assert_close(out_fused, out_plain)
    g = torch.randn_like(out_fused)
    grads_fused = torch.autograd.grad(out_fused, (logits, alpha), g)
    grads_plain = torch.autograd.grad(out_plain, (logits, alpha), g)
    for a, b in zip(grads_fused, grads_plain, strict=True):
        torch.testing.assert_close(a, b)


def test_gradcheck_unweighted_sum_path():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    y = onehot(torch.randint(0, 4, (2, 3, 3, 2)), 4).double()
    assert torch.autograd.gradcheck(lambda z: dual_focal_loss(z, y, beta=0.5, alpha=2.0, reduction="sum"), (logits,))


def test_sigmoid_binary_is_two_class_softmax():
    torch.manual_seed(4)
    z = torch.randn(3, 1, 5, 5)
    y = (torch.rand(3, 1, 5, 5) > 0.5).float()
    binary = dual_focal_loss(z, y, activation="sigmoid")
    two_class = dual_focal_loss(torch.cat([torch.zeros_like(z), z], 1), torch.cat([1 - y, y], 1))
    torch.testing.assert_close(binary, two_class)
    # Hand value: z = 0, y = 1 -> p = (.5, .5) -> 2 ln 2 + 1 (as the first golden pixel).
    single = dual_focal_loss(torch.zeros(1, 1, 1), torch.ones(1, 1, 1), activation="sigmoid")
    assert single.item() == pytest.approx(2 * math.log(2) + 1, abs=1e-6)


def test_probabilities_input():
    logits, target = two_pixels()
    from_probs = dual_focal_loss(logits.softmax(1), target, activation="none")
    assert from_probs.item() == pytest.approx(1.730829, abs=1e-5)


@pytest.mark.parametrize("reduction,shape", [("mean", ()), ("sum", ()), ("none", (2, 3, 4, 5, 6))])
def test_reduction_shapes_3d(reduction, shape):
    logits = torch.randn(2, 3, 4, 5, 6)
    y = onehot(torch.randint(0, 3, (2, 4, 5, 6)), 3)
    out = dual_focal_loss(logits, y, reduction=reduction)
    assert out.shape == shape
    none = dual_focal_loss(logits, y, reduction="none")
    if reduction == "mean":
        torch.testing.assert_close(out, none.sum(1).mean())
    elif reduction == "sum":
        torch.testing.assert_close(out, none.sum())


def test_mask_mean_counts_only_kept_pixels():
    logits, target = two_pixels()
    mask = torch.tensor([[[0.0, 1.0]]])  # drop pixel 1
    assert dual_focal_loss(logits, target, mask=mask).item() == pytest.approx(1.075364, abs=1e-5)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("scale", [50.0, 1e4])
def test_near_perfect_and_extreme_logits(fused, scale):
    labels = torch.randint(0, 3, (2, 6, 6))
    y = onehot(labels, 3)
    logits = ((2 * y - 1) * scale).requires_grad_()
    loss = dual_focal_loss(logits, y, fused=fused)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()
    wrong = (-(2 * y - 1) * scale).requires_grad_()  # confidently wrong: large but finite
    bad = dual_focal_loss(wrong, y, fused=fused)
    bad.backward()
    assert torch.isfinite(bad) and bad.item() > 10 and torch.isfinite(wrong.grad).all()


def test_all_one_class_target():
    y = onehot(torch.zeros(2, 4, 4, dtype=torch.long), 3)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = dual_focal_loss(logits, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_bfloat16_autocast_cpu():
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, 8, 8) * 1e3
    y = onehot(torch.randint(0, 3, (2, 8, 8)), 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(x)
        assert logits.dtype == torch.bfloat16
        loss = dual_focal_loss(logits, y)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(conv.weight.grad).all()


def test_bad_call_arguments():
    z = torch.randn(1, 2, 3)
    with pytest.raises(ValueError, match="activation"):
        dual_focal_loss(z, z, activation="tanh")
    with pytest.raises(ValueError, match="reduction"):
        dual_focal_loss(z, z, reduction="avg")
    with pytest.raises(ValueError, match=r"\(1, 3, 3\)"):
        dual_focal_loss(z, torch.zeros(1, 3, 3))


@pytest.mark.parametrize("gamma", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_label_path_matches_onehot_plain_path_and_gradcheck(gamma, weighted):
    torch.manual_seed(6)
    logits = torch.randn(2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 4, 3))
    y = torch.zeros_like(logits).scatter_(1, labels, 1.0)
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64) if weighted else None
    mask = (torch.rand(2, 1, 4, 3) > 0.3).double() if weighted else None
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    kw = dict(gamma=gamma, beta=0.8, rho=1.2, weight=weight, mask=mask)
    assert torch.autograd.gradcheck(lambda z, a: dual_focal_loss(z, labels, alpha=a, **kw), (logits, alpha))
    from_labels = dual_focal_loss(logits, labels, alpha=alpha, **kw)
    reference = dual_focal_loss(logits, y, alpha=alpha, fused=False, **kw)
    torch.testing.assert_close(from_labels, reference)
    for a, b in zip(torch.autograd.grad(from_labels, (logits, alpha)), torch.autograd.grad(reference, (logits, alpha)), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("scale", [50.0, 1e4])
def test_label_path_extreme_logits(scale):
    labels = torch.randint(0, 3, (2, 1, 6, 6))
    y = torch.zeros(2, 3, 6, 6).scatter_(1, labels, 1.0)
    for sign in (1.0, -1.0):  # confidently right, confidently wrong
        logits = (sign * (2 * y - 1) * scale).requires_grad_()
        reference = logits.detach().clone().requires_grad_()
        loss, expected = dual_focal_loss(logits, labels), dual_focal_loss(reference, y, fused=False)
        (loss + expected).backward()
        torch.testing.assert_close(loss, expected)
        assert torch.isfinite(logits.grad).all()
        torch.testing.assert_close(logits.grad, reference.grad)
    assert dual_focal_loss(logits.detach() * -1, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_labels_for_none_reduction_and_sigmoid_use_onehot():
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 1, 4, 4))
    y = torch.zeros_like(logits).scatter_(1, labels, 1.0)
    torch.testing.assert_close(dual_focal_loss(logits, labels, reduction="none"), dual_focal_loss(logits, y, reduction="none"))
    torch.testing.assert_close(dual_focal_loss(logits, labels, activation="sigmoid"), dual_focal_loss(logits, y, activation="sigmoid"))
