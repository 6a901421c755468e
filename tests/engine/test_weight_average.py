"""train.ema_decay: the weights' moving average is what is validated, saved and resumed."""

from __future__ import annotations

import pytest
import torch

from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.components import build_components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.scoring import validate
from medseg_dfl.engine.training import train
from medseg_dfl.networks import build_network


@pytest.fixture(scope="module")
def smears(tmp_path_factory):
    from medseg_dfl.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("smears")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0)  # 4 train, 1 val
    return root


def tiny(root, **train_values) -> dict:
    return {
        "experiment": {"name": "tiny", "seed": 0},
        "data": {"root": str(root), "cache": "memory"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}},
        "optim": {"lr": 0.05},
        "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 3, **train_values},
    }


def test_average_follows_the_decay(smears):
    parts = build_components(config_from_dict(tiny(smears, ema_decay=0.25)), torch.device("cpu"), DistContext())
    first = next(parts.model.parameters())
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            first.fill_(value)
        parts.update_average()
    # The first update copies; then average = 0.25 * average + 0.75 * new: 1 -> 1.75 -> 3.4375.
    assert float(next(parts.shipped.parameters()).detach().flatten()[0]) == pytest.approx(3.4375)
    assert float(first.detach().flatten()[0]) == 4.0  # the trained network keeps its own weights
    assert parts.ema is not None and int(parts.ema.n_averaged) == 3


def test_validation_and_checkpoints_use_the_average(smears, tmp_path):
    cfg = config_from_dict(tiny(smears, ema_decay=0.9))
    result = train(cfg, tmp_path / "run", progress=None)
    payload = load_checkpoint(tmp_path / "run" / "best.pt")
    assert payload["ema_steps"] == 3
    averaged, raw = payload["model_state"], payload["train_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    parts = build_components(cfg, torch.device("cpu"), DistContext())
    scores = {}
    for name, state in (("averaged", averaged), ("raw", raw)):
        network = build_network(cfg)
        network.load_state_dict(state)
        scores[name] = validate(network, parts.loss_fn, parts.val_loader, cfg, torch.device("cpu"), DistContext(),
                                 parts.amp).loss
    assert result.metrics[0]["val_loss"] == pytest.approx(scores["averaged"], rel=1e-5)
    assert scores["raw"] != pytest.approx(scores["averaged"], rel=1e-3)


def test_resume_continues_the_average_exactly(smears, tmp_path):
    reference = train(config_from_dict(tiny(smears, ema_decay=0.9, epochs=2)), tmp_path / "ref", progress=None)
    train(config_from_dict(tiny(smears, ema_decay=0.9, epochs=1)), tmp_path / "run", progress=None)
    resumed = train(config_from_dict(tiny(smears, ema_decay=0.9, epochs=2)), tmp_path / "run", resume=True,
                    progress=None)  # fmt: skip
    want, got = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    assert got["ema_steps"] == want["ema_steps"] == 6
    for key in ("model_state", "train_model_state"):
        for name, tensor in want[key].items():
            torch.testing.assert_close(got[key][name], tensor, rtol=1e-5, atol=1e-6)
    assert resumed.metrics[1]["val_loss"] == pytest.approx(reference.metrics[1]["val_loss"], rel=1e-5)


def test_decay_outside_zero_one_is_refused():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"train.ema_decay must be in \(0, 1\)"):
            config_from_dict({"train": {"ema_decay": bad}})
