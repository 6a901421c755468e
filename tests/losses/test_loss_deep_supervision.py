"""supervised_loss: nnU-Net's weighted sum over DynUNet's deep-supervision heads; one output unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg_dfl.losses.deep_supervision import emits_heads, head_weights, supervised_loss
from medseg_dfl.losses.registry import build_loss


def test_head_weights_halve_and_sum_to_one():
    assert head_weights(1) == [1.0]
    assert head_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert sum(head_weights(5)) == pytest.approx(1.0) and head_weights(5)[-1] == pytest.approx(1 / 31)
    with pytest.raises(ValueError, match="at least one"):
        head_weights(0)


def test_three_head_stack_is_the_hand_weighted_sum():
    gen = torch.Generator().manual_seed(0)
    stack = torch.randn(2, 3, 4, 6, 5, generator=gen)  # (B, 1 + deep_supr_num, C, H, W)
    label = torch.randint(0, 4, (2, 1, 6, 5), generator=gen)
    assert emits_heads(stack, label) and not emits_heads(stack[:, 0], label)
    by_hand = [F.cross_entropy(stack[:, i], label[:, 0]) for i in range(3)]
    expected = 4 / 7 * by_hand[0] + 2 / 7 * by_hand[1] + 1 / 7 * by_hand[2]
    got = supervised_loss(build_loss("ce", 4), stack, label)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() != pytest.approx(by_hand[0].item(), rel=1e-3)  # the heads count, not only the output


def test_one_output_is_the_plain_loss_in_float32():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 5, generator=gen).bfloat16()
    label = torch.randint(0, 4, (2, 1, 6, 5), generator=gen)
    loss_fn = build_loss("dice-ce", 4)
    got = supervised_loss(loss_fn, logits, label)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(loss_fn(logits.float(), label).item(), rel=1e-6)


def test_gradient_reaches_every_head_by_its_weight():
    stack = torch.zeros(1, 3, 2, 4, 4, requires_grad=True)
    label = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    supervised_loss(build_loss("ce", 2), stack, label).backward()
    # d CE / d logit of class 0 at zero logits: -1/2 per pixel, averaged over 16 pixels, times the weight.
    per_head = stack.grad[0, :, 0].sum(dim=(1, 2))
    assert per_head.tolist() == pytest.approx([-0.5 * w for w in head_weights(3)], rel=1e-5)
