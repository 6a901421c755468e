"""Baseline losses beside the DFL: weighted CE, (focal) Tversky, Dice + softmax focal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg_dfl.losses.registry import LOSS_NAMES, build_loss


def _batch(seed: int = 0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, classes, 6, 5, generator=gen), torch.randint(0, classes, (2, 1, 6, 5), generator=gen)


def test_new_names_are_registered() -> None:
    for name in ("wce", "tversky", "focal-tversky", "dice-focal-softmax"):
        assert name in LOSS_NAMES


def test_wce_fixed_weight_equals_weighted_cross_entropy() -> None:
    x, y = _batch()
    loss = build_loss("wce", 3, weight=[0.2, 1.0, 3.0])
    expected = F.cross_entropy(x, y[:, 0], weight=torch.tensor([0.2, 1.0, 3.0]))
    assert float(loss(x, y)) == pytest.approx(float(expected), rel=1e-6)


def test_wce_running_weights_are_inverse_frequency() -> None:
    x = torch.randn(1, 2, 4, 4)
    y = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    y[..., :1, :] = 1  # class 1: 4 of 16 pixels -> frequencies (0.75, 0.25)
    loss = build_loss("wce", 2)
    value = loss.train()(x, y)
    # mean(f) / f = (2/3, 2), normalised to mean 1 -> (0.5, 1.5)
    assert loss.current_weights().tolist() == pytest.approx([0.5, 1.5], rel=1e-5)
    assert float(value) == pytest.approx(float(F.cross_entropy(x, y[:, 0], weight=torch.tensor([0.5, 1.5]))), rel=1e-5)
    loss.eval()(x, torch.ones_like(y))  # validation does not move the weights
    assert loss.current_weights().tolist() == pytest.approx([0.5, 1.5], rel=1e-5)


def _tversky_by_hand(x: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    p = x.softmax(1)
    g = F.one_hot(y[:, 0], x.shape[1]).permute(0, 3, 1, 2).float()
    dims = (2, 3)
    tp, fp, fn = (p * g).sum(dims), (p * (1 - g)).sum(dims), ((1 - p) * g).sum(dims)
    return 1 - (tp + 1e-5) / (tp + alpha * fp + beta * fn + 1e-5)  # B,C


def test_focal_tversky_matches_hand_computation() -> None:
    x, y = _batch(1)
    per_class = _tversky_by_hand(x, y, 0.3, 0.7)
    assert float(build_loss("tversky", 3)(x, y)) == pytest.approx(float(per_class.mean()), rel=1e-5)
    focal = build_loss("focal-tversky", 3)  # gamma 4/3
    assert float(focal(x, y)) == pytest.approx(float(per_class.pow(0.75).mean()), rel=1e-5)


def test_focal_tversky_is_near_zero_for_a_confident_correct_prediction() -> None:
    _, y = _batch(2)
    x = F.one_hot(y[:, 0], 3).permute(0, 3, 1, 2).float() * 30.0
    assert float(build_loss("focal-tversky", 3)(x, y)) < 1e-4


def test_dice_focal_softmax_focal_part_is_softmax_cross_entropy() -> None:
    x, y = _batch(3)
    ours = build_loss("dice-focal-softmax", 3, gamma=0.0, lambda_dice=0.0)
    # softmax focal loss with gamma 0 is cross entropy (averaged over the C channels too)
    assert float(ours(x, y)) == pytest.approx(float(F.cross_entropy(x, y[:, 0])) / 3, rel=1e-5)
    # MONAI's DiceFocalLoss uses a sigmoid focal part here (MONAI issue 8242): a different value
    monai = build_loss("dice-focal", 3, gamma=0.0, lambda_dice=0.0)
    assert abs(float(monai(x, y)) - float(ours(x, y))) > 0.1


def test_focal_tversky_rejects_nonpositive_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        build_loss("focal-tversky", 3, gamma=0.0)
