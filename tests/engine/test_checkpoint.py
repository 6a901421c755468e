"""Checkpoints: weights_only round trip, atomic writes, RNG state capture/restore."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.engine.checkpoint import (
    FORMAT_VERSION,
    PAYLOAD_KEYS,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _payload(**extra):
    cfg = config_from_dict({})
    payload = {key: None for key in PAYLOAD_KEYS}
    payload.update(
        format_version=FORMAT_VERSION,
        model_state={"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)},
        config=config_to_dict(cfg),
        class_names=list(cfg.data.class_names),
        loss_state={"scale": torch.tensor(1.5)},
        epoch=3,
        best_metric=0.25,
        rng_state=capture_rng_state(),
    )
    payload.update(extra)
    return payload


def test_round_trip_is_weights_only_loadable(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", _payload())
    raw = torch.load(path, weights_only=True)  # must not need pickled code
    assert raw["epoch"] == 3
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model_state"]["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert loaded["config"]["data"]["class_names"] == ["background", "rbc", "wbc", "platelet"]
    assert config_to_dict(config_from_dict(loaded["config"])) == loaded["config"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_payload_key_is_rejected_and_nothing_written(tmp_path):
    payload = _payload()
    del payload["loss_state"]
    with pytest.raises(ValueError, match="loss_state"):
        save_checkpoint(tmp_path / "last.pt", payload)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", _payload(epoch=1))

    def broken_save(obj, target):
        Path(target).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _payload(epoch=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"format_version": 99}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="format_version 99"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_rng_state_restores_every_generator(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "c.pt", _payload(rng_state=capture_rng_state()))
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng_state"])
    got = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]
