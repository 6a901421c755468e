"""DualFocalLoss / DiceDualFocalLoss: argument checks, targets, background, ignore_index, weights,
the learnable scale, and training a one-layer net (MONAI's convergence-test style)."""

import math

import pytest
import torch
import torch.nn.functional as F

from medseg_dfl.losses import DiceDualFocalLoss, DualFocalLoss, dual_focal_loss


def labels_and_onehot(b=2, c=3, spatial=(6, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (b, 1, *spatial), generator=g)
    return labels, torch.zeros(b, c, *spatial).scatter_(1, labels, 1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rho": 0.5}, "rho=0.5"),
        ({"alpha": -1.0}, "alpha=-1.0"),
        ({"beta": -0.1}, "beta=-0.1"),
        ({"gamma": 0.0}, "gamma=0.0"),
        ({"softmax": True, "sigmoid": True}, "sigmoid=True"),
        ({"weight": [1.0, -2.0]}, "-2.0"),
        ({"weight": [1.0, 2.0], "num_classes": 3}, r"2 values"),
        ({"weight": [1.0, 2.0, 3.0], "adaptive_weights": True}, "exclusive"),
        ({"learnable_alpha": True, "alpha": 0.0}, "alpha=0.0"),
        ({"reduction": "avg"}, "avg"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DualFocalLoss(**kwargs)


def test_bad_inputs_raise_naming_values():
    labels, y = labels_and_onehot()
    logits = torch.randn(2, 3, 6, 5)
    with pytest.raises(ValueError, match="4 values"):
        DualFocalLoss(weight=[1, 1, 1, 1])(logits, y)
    with pytest.raises(ValueError, match=r"\(2, 3, 6, 4\)"):
        DualFocalLoss()(logits, y[..., :4])
    with pytest.raises(ValueError, match="max 3"):
        DualFocalLoss(to_onehot_y=True)(logits, labels.clamp(max=2).index_fill(2, torch.tensor([0]), 3))
    with pytest.raises(ValueError, match=r"\(2, 1, 6, 5\)"):
        DualFocalLoss(to_onehot_y=True)(logits, y)
    bad = logits.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite"):
        DualFocalLoss()(bad, y)


def test_labels_equal_onehot_and_functional():
    labels, y = labels_and_onehot(spatial=(4, 3, 5))
    logits = torch.randn(2, 3, 4, 3, 5)
    from_labels = DualFocalLoss(to_onehot_y=True, gamma=2.0)(logits, labels)
    torch.testing.assert_close(from_labels, DualFocalLoss(gamma=2.0)(logits, y))
    torch.testing.assert_close(from_labels, dual_focal_loss(logits, y, gamma=2.0))


def test_include_background_false_drops_channel_zero_after_softmax():
    labels, y = labels_and_onehot()
    logits = torch.randn(2, 3, 6, 5)
    loss = DualFocalLoss(include_background=False, reduction="none")(logits, y)
    assert loss.shape == (2, 2, 6, 5)
    full = dual_focal_loss(logits, y, reduction="none")  # softmax over all 3 channels
    torch.testing.assert_close(loss, full[:, 1:])
    mean = DualFocalLoss(include_background=False)(logits, y)
    torch.testing.assert_close(mean, full[:, 1:].sum(1).mean())
    # A C - 1 weight vector is accepted without background.
    weighted = DualFocalLoss(include_background=False, weight=[2.0, 1.0])(logits, y)
    torch.testing.assert_close(weighted, (full[:, 1:2] * 2 + full[:, 2:]).sum(1).mean())


def test_ignore_index_labels_and_onehot():
    labels, y = labels_and_onehot()
    logits = torch.randn(2, 3, 6, 5)
    ignored = labels.clone()
    ignored[0, 0, :3] = 255
    keep = (ignored != 255).float()
    loss = DualFocalLoss(to_onehot_y=True, ignore_index=255, reduction="none")(logits, ignored)
    assert (loss[0, :, :3] == 0).all()
    expected = (dual_food := dual_focal_loss(logits, y, reduction="none")).sum(1, keepdim=True)[keep.bool()].mean()
    assert dual_food.shape == loss.shape
    torch.testing.assert_close(DualFocalLoss(to_onehot_y=True, ignore_index=255)(logits, ignored), expected)
    # One-hot target, ignore class 2: its pixels drop out of every class.
    by_class = DualFocalLoss(ignore_index=2)(logits, y)
    kept = labels != 2
    torch.testing.assert_close(by_class, dual_food.sum(1, keepdim=True)[kept].mean())


def test_binary_sigmoid_module():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.7).long()
    loss = DualFocalLoss(softmax=False, sigmoid=True, to_onehot_y=True)(logits, target)
    two = torch.cat([torch.zeros_like(logits), logits], 1)
    torch.testing.assert_close(loss, dual_focal_loss(two, torch.cat([1 - target, target], 1).float()))
    with pytest.raises(ValueError, match="max 2"):
        DualFocalLoss(sigmoid=True, softmax=False, to_onehot_y=True)(logits, target + 1)


def test_learnable_alpha_gradient_and_kendall_term():
    labels, y = labels_and_onehot()
    logits = torch.randn(2, 3, 6, 5)
    loss_fn = DualFocalLoss(learnable_alpha=True, alpha=2.0)
    params = list(loss_fn.parameters())
    assert len(params) == 1 and params[0].item() == pytest.approx(-math.log(2.0))
    assert "log_alpha_inv" in loss_fn.state_dict()
    loss = loss_fn(logits, y)
    focal = dual_focal_loss(logits, y, alpha=1.0, beta=0.0, reduction="none") - dual_focal_loss(
        logits, y, alpha=0.0, beta=0.0, reduction="none"
    )
    f_mean = focal.sum(1).mean()
    # loss = (fixed alpha=2 loss) + s, and d loss / d s = -exp(-s) F + 1.
    torch.testing.assert_close(loss, dual_focal_loss(logits, y, alpha=2.0) - math.log(2.0))
    loss.backward()
    assert params[0].grad.item() == pytest.approx(1.0 - 2.0 * f_mean.item(), rel=1e-5)
    none = DualFocalLoss(learnable_alpha=True, reduction="none")(logits, y)
    torch.testing.assert_close(none.sum(1).mean(), DualFocalLoss(learnable_alpha=True)(logits, y))


def test_dice_dfl_composes_and_exposes_parameters():
    labels, y = labels_and_onehot()
    logits = torch.randn(2, 3, 6, 5)
    loss_fn = DiceDualFocalLoss(to_onehot_y=True, lambda_dice=0.3, lambda_dfl=0.7, learnable_alpha=True)
    from monai.losses import DiceLoss

    dice = DiceLoss(to_onehot_y=True, softmax=True)(logits, labels)
    dfl = DualFocalLoss(to_onehot_y=True, learnable_alpha=True)(logits, labels)
    torch.testing.assert_close(loss_fn(logits, labels), 0.3 * dice + 0.7 * dfl)
    assert [n for n, _ in loss_fn.named_parameters()] == ["dfl.log_alpha_inv"]
    with pytest.raises(ValueError, match="lambda_dice"):
        DiceDualFocalLoss(lambda_dice=-1.0)


def _train_one_layer(loss_fn, steps, seed=0, extra_params=()):
    """A 1x1 conv learns pixel classes from intensities (class c has intensity c) with noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (4, 1, 8, 8), generator=g)
    image = labels.float() + 0.15 * torch.randn(4, 1, 8, 8, generator=g)
    torch.manual_seed(seed)
    net = torch.nn.Conv2d(1, 3, 1)
    opt = torch.optim.Adam([*net.parameters(), *extra_params], lr=0.05)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(image), labels)
        loss.backward()
        opt.step()
        history.append(loss.item())
    accuracy = (net(image).argmax(1, keepdim=True) == labels).float().mean().item()
    return history, accuracy


def test_one_layer_net_converges():
    history, accuracy = _train_one_layer(DualFocalLoss(to_onehot_y=True), steps=80)
    assert history[-1] < 0.35 * history[0]
    assert accuracy > 0.95


def test_learnable_scale_moves_and_stays_finite():
    loss_fn = DualFocalLoss(to_onehot_y=True, learnable_alpha=True)
    s0 = loss_fn.log_alpha_inv.item()
    history, accuracy = _train_one_layer(loss_fn, steps=300, extra_params=loss_fn.parameters())
    alpha = loss_fn.current_alpha
    assert loss_fn.log_alpha_inv.item() != s0
    assert math.isfinite(alpha) and 1.0 < alpha < math.exp(10) - 1  # rose as errors shrank; not at a bound
    assert all(math.isfinite(v) for v in history) and accuracy > 0.9


def test_half_precision_inputs_cast():
    labels, y = labels_and_onehot()
    logits = torch.randn(2, 3, 6, 5).to(torch.bfloat16).requires_grad_()
    loss = DualFocalLoss()(logits, y)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    assert torch.isfinite(logits.grad.float()).all()
    torch.testing.assert_close(loss, DualFocalLoss()(logits.detach().float(), y))


def test_perfect_prediction_module_near_zero():
    labels, y = labels_and_onehot()
    assert DualFocalLoss(to_onehot_y=True)((2 * y - 1) * 50, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert F.cross_entropy((2 * y - 1) * 50, labels[:, 0]).item() == pytest.approx(0.0, abs=1e-6)


def test_label_and_onehot_targets_agree_with_acw_and_ignore():
    labels, y = labels_and_onehot(spatial=(10, 10))
    labels[0, 0, :2] = 255
    logits = torch.randn(2, 3, 10, 10)
    from_labels = DualFocalLoss(to_onehot_y=True, adaptive_weights=True, ignore_index=255, include_background=False)
    from_onehot = DualFocalLoss(adaptive_weights=True, include_background=False)
    keep = (labels != 255).float()
    # One-hot with the ignored pixels all-zero is MONAI's sentinel convention: same pixels dropped.
    onehot_target = y * keep
    sentinel = DualFocalLoss(adaptive_weights=True, include_background=False, ignore_index=-1)
    a, c = from_labels(logits, labels), sentinel(logits, onehot_target)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(from_labels.class_weights.counts, sentinel.class_weights.counts)
    assert from_labels.class_weights.counts.sum().item() == keep.sum().item()
    assert from_onehot(logits, onehot_target).item() != pytest.approx(a.item())  # ignored pixels do count there
