"""Adaptive class weights: direction, eval mode, checkpoints, and agreement across 2 gloo processes."""

import socket

import pytest
import torch
import torch.multiprocessing as mp
from acw_dist_worker import FRACTIONS, MOMENTUM, STEPS, gloo_worker, imbalanced_batch

from medseg_dfl.losses import AdaptiveClassWeights, DualFocalLoss, dual_focal_loss


def test_weights_move_toward_rare_classes():
    acw = AdaptiveClassWeights(3, momentum=0.9)
    torch.testing.assert_close(acw.weights(), torch.ones(3))  # before any update
    for step in range(20):
        acw.update(imbalanced_batch(step, FRACTIONS[0]))
    w = acw.weights()
    assert w[2] > 1.0 and w[2] > w[1] > w[0]
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    # Frequencies ~ (.9, .09, .01): raw mean(f)/f = (.37, 3.7, 20 (clipped at 20 from 33)) -> / mean.
    assert acw.frequencies[0].item() == pytest.approx(0.9, abs=0.02)
    assert (w[1] / w[0]).item() == pytest.approx(0.9 / 0.09, rel=0.15)
    assert (w[2] / w[0]).item() == pytest.approx(20 / (acw.frequencies.mean() / acw.frequencies[0]).item(), rel=1e-5)


def test_cumulative_mode_and_first_batch():
    acw = AdaptiveClassWeights(2, momentum=None)
    y = torch.zeros(1, 2, 2, 2)
    y[:, 0] = 1.0
    y[0, :, 0, 0] = torch.tensor([0.0, 1.0])  # 3 background pixels, 1 foreground
    acw.update(y)
    acw.update(y)
    torch.testing.assert_close(acw.frequencies, torch.tensor([0.75, 0.25], dtype=torch.float64))
    # raw = .5/.75, .5/.25 = (2/3, 2) -> normalised to mean 1: (0.5, 1.5)
    torch.testing.assert_close(acw.weights(), torch.tensor([0.5, 1.5]), atol=1e-5, rtol=0)


def test_eval_mode_does_not_update_and_state_dict_round_trip():
    loss_fn = DualFocalLoss(adaptive_weights=True, weight_momentum=0.5)  # lazily sized buffers
    logits = torch.randn(2, 3, 20, 20)
    loss_fn(logits, imbalanced_batch(0, FRACTIONS[0]))
    state = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    assert set(state) == {"class_weights.frequencies", "class_weights.counts", "class_weights.num_updates"}
    loss_fn.eval()
    loss_fn(logits, imbalanced_batch(1, fractions=(0.1, 0.1, 0.8)))
    for key, value in loss_fn.state_dict().items():
        torch.testing.assert_close(value, state[key])
    restored = DualFocalLoss(adaptive_weights=True).eval()
    restored.load_state_dict(state)
    y = imbalanced_batch(2, FRACTIONS[0])
    torch.testing.assert_close(restored(logits, y), loss_fn(logits, y))
    w = loss_fn.class_weights.weights()
    torch.testing.assert_close(restored(logits, y), dual_focal_loss(logits, y, weight=w))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_agree(tmp_path):
    mp.spawn(gloo_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    weights = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    torch.testing.assert_close(weights[0], weights[1])
    # Equal to one process that sees both ranks' batches together.
    single = AdaptiveClassWeights(3, momentum=MOMENTUM)
    for step in range(STEPS):
        single.update(torch.cat([imbalanced_batch(10 * step + r, FRACTIONS[r]) for r in range(2)]))
    torch.testing.assert_close(weights[0], single.weights())
    assert not torch.allclose(weights[0], torch.ones(3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="1.5"):
        AdaptiveClassWeights(3, momentum=1.5)
    with pytest.raises(ValueError, match=r"\(2.0, 1.0\)"):
        AdaptiveClassWeights(3, weight_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="4 classes"):
        AdaptiveClassWeights(3).update(torch.ones(1, 4, 2, 2))


def test_update_from_labels_equals_onehot_update():
    y = imbalanced_batch(3, FRACTIONS[0])
    labels = y.argmax(1, keepdim=True)
    mask = (torch.rand(2, 1, 20, 20) > 0.5).float()
    a, b = AdaptiveClassWeights(3), AdaptiveClassWeights(3)
    a.update(y, mask)
    b.update_from_labels(labels, 3, mask)
    torch.testing.assert_close(a.counts, b.counts)
    torch.testing.assert_close(a.weights(), b.weights())
    assert a.counts.sum().item() == mask.sum().item()
