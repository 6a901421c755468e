"""build_loss: every name takes (logits, integer labels); errors name the bad value and the choices."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss

import medseg_dfl.losses as losses
from medseg_dfl.losses import LOSS_NAMES, DiceDualFocalLoss, DualFocalLoss, build_loss, dual_focal_loss


@pytest.fixture
def batch():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 1, 6, 5))
    return torch.randn(2, 3, 6, 5, requires_grad=True), labels


def test_names():
    assert set(LOSS_NAMES) == {
        "dfl", "dfl-acw", "dfl-learnable", "dice-dfl", "ce", "focal", "dice", "dice-ce", "dice-focal",
        "dice-focal-softmax", "wce", "tversky", "focal-tversky",
    }


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_takes_logits_and_labels(name, batch):
    logits, labels = batch
    loss = build_loss(name, 3)(logits, labels)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    assert logits.grad.abs().sum() > 0


def test_values_match_the_underlying_losses(batch):
    logits, labels = batch
    y = torch.zeros_like(logits).scatter_(1, labels, 1.0)
    torch.testing.assert_close(build_loss("ce", 3)(logits, labels), F.cross_entropy(logits, labels[:, 0]))
    torch.testing.assert_close(build_loss("dfl", 3, gamma=2.0)(logits, labels), dual_focal_loss(logits, y, gamma=2.0))
    expected = {
        "focal": FocalLoss(use_softmax=True)(logits, y),
        "dice": DiceLoss(softmax=True)(logits, y),
        "dice-ce": DiceCELoss(softmax=True)(logits, y),
        "dice-focal": DiceFocalLoss(softmax=True)(logits, y),
    }
    for name, value in expected.items():
        torch.testing.assert_close(build_loss(name, 3)(logits, labels), value)


def test_types_and_flags():
    assert isinstance(build_loss("dfl-acw", 4).class_weights.weights(), torch.Tensor)
    assert build_loss("dfl-acw", 4).class_weights.num_classes == 4
    learnable = build_loss("dfl-learnable", 3, alpha=0.5)
    assert isinstance(learnable, DualFocalLoss) and len(list(learnable.parameters())) == 1
    assert learnable.current_alpha == pytest.approx(0.5)
    compound = build_loss("dice-dfl", 3, lambda_dice=0.5, learnable_alpha=True)
    assert isinstance(compound, DiceDualFocalLoss) and len(list(compound.parameters())) == 1
    ce = build_loss("ce", 3, weight=[1.0, 2.0, 3.0], ignore_index=255)
    assert ce.weight.tolist() == [1.0, 2.0, 3.0] and ce.ignore_index == 255


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("dlf", {}, "dfl, dfl-acw"),
        ("dfl", {"gama": 2.0}, "gama.*allowed keywords:.*gamma"),
        ("dfl", {"to_onehot_y": False}, "to_onehot_y"),
        ("focal", {"softmax": True}, "softmax"),
        ("dfl", {"weight": [1.0, 2.0]}, "2 values"),
        ("dice-ce", {"weight": [1.0, 2.0, 3.0, 4.0]}, "4 values"),
        ("dfl", {"rho": 0.9}, "rho=0.9"),
    ],
)
def test_bad_names_and_keywords(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_loss(name, 3, **kwargs)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("dfl", 1)


def test_package_exports():
    for name in losses.__all__:
        assert getattr(losses, name) is not None
    with pytest.raises(AttributeError):
        losses.NoSuchLoss  # noqa: B018


def test_resolve_loss_is_the_one_check_of_a_name_and_its_keywords(monkeypatch):
    from medseg_dfl.config import config_from_dict
    from medseg_dfl.losses import registry

    resolved = registry.resolve_loss("tversky", {"alpha": 0.3})
    assert resolved.factory is registry.FocalTverskyLoss
    assert resolved.options == {"gamma": 1.0, "alpha": 0.3, "to_onehot_y": True, "softmax": True}
    with pytest.raises(ValueError) as err:
        registry.resolve_loss("dfl", {"gama": 2.0, "zeta": 1, "gamma": 2.0})
    assert str(err.value).startswith("loss 'dfl' does not take gama, zeta; allowed keywords: ")
    with pytest.raises(ValueError, match=r"^loss.name: 'dlf' is not one of dfl, dfl-acw"):
        registry.resolve_loss("dlf", {})
    with pytest.raises(ValueError, match=r"^loss.kwargs.gamma: expected a number, got '2'"):
        build_loss("dfl", 3, gamma="2")  # build_loss checks kinds too, not only load_config

    calls = []
    original = registry.resolve_loss

    def counting(name, kwargs=None):
        calls.append(name)
        return original(name, kwargs)

    monkeypatch.setattr(registry, "resolve_loss", counting)
    cfg = config_from_dict({"loss": {"name": "dice-dfl", "kwargs": {"lambda_dice": 0.5}}})
    monkeypatch.setattr("medseg_dfl.config.resolve_loss", counting)
    config_from_dict({"loss": {"name": "ce"}})
    assert calls == ["ce"]  # load_config: one check
    loss = registry.loss_from_config(cfg)
    assert calls == ["ce", "dice-dfl"]  # building: one check
    assert isinstance(loss, DiceDualFocalLoss) and loss.lambda_dice == 0.5 and loss.dfl.num_classes == 4
