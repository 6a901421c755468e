"""train(): the files of a run, determinism, resume after SIGKILL, losses by name, schedules."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from medseg_dfl.config import config_from_dict, config_to_dict, load_config
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.components import build_components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.optim import lr_factor
from medseg_dfl.engine.records import metrics_columns, read_metrics_rows
from medseg_dfl.engine.scoring import validate
from medseg_dfl.engine.training import train, train_one_epoch
from medseg_dfl.losses.registry import LOSS_NAMES
from medseg_dfl.networks import build_network

NAMES = ["background", "rbc", "wbc", "platelet"]


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    from medseg_dfl.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("smears")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0)  # 4 train, 1 val
    return root


def tiny(root: Path, **sections) -> dict:
    values = {
        "experiment": {"name": "tiny", "seed": 0},
        "data": {"root": str(root), "cache": "memory"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}},
        "optim": {"lr": 0.01},
        "train": {"epochs": 1, "batch_size": 2},
    }
    for name, section in sections.items():
        values[name] = {**values.get(name, {}), **section}
    return values


def test_one_epoch_run_writes_every_file(smears, tmp_path):
    cfg = config_from_dict(tiny(smears))
    result = train(cfg, tmp_path / "run", progress=None)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.csv", "split.json", "train.log"
    ]  # fmt: skip
    assert load_config(run / "config.yaml") == cfg
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == metrics_columns(NAMES) and len(rows) == 1
    row = {k: float(v) if v else math.nan for k, v in rows[0].items()}
    assert row["epoch"] == 1 and math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert 0.0 <= row["dice_background"] <= 1.0 and row["iou_background"] <= row["dice_background"]
    assert row["mean_fg_dice"] == pytest.approx(result.best_metric)
    assert row["lr"] == pytest.approx(0.01) and row["seconds"] > 0
    assert (result.best_epoch, result.epochs_run) == (1, 1)
    log = (run / "train.log").read_text().splitlines()
    assert len(log) == 1 and "epoch 1 train_loss=" in log[0]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_checkpoint_is_self_contained(smears, tmp_path):
    cfg = config_from_dict(tiny(smears, loss={"name": "dfl-learnable"}))
    train(cfg, tmp_path / "run", progress=None)
    payload = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert payload["class_names"] == NAMES and payload["epoch"] == 1 and payload["fingerprint"] is None
    assert payload["config"] == config_to_dict(cfg)
    model = build_network(config_from_dict(payload["config"]))
    model.load_state_dict(payload["model_state"])  # strict: every weight is there
    assert "log_alpha_inv" in payload["loss_state"]  # the learnable scale travels with the weights
    assert payload["optimizer_state"]["state"]  # AdamW moments for resuming


def test_existing_run_is_never_clobbered(smears, tmp_path):
    cfg = config_from_dict(tiny(smears))
    train(cfg, tmp_path / "run", progress=None)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run.*--resume"):
        train(cfg, tmp_path / "run", progress=None)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, tmp_path / "other", resume=True, progress=None)
    changed = config_from_dict(tiny(smears, loss={"name": "ce"}))
    with pytest.raises(ValueError, match="loss.name: 'dfl' -> 'ce'"):
        train(changed, tmp_path / "run", resume=True, progress=None)


def test_resume_extends_run_and_keeps_history(smears, tmp_path):
    train(config_from_dict(tiny(smears)), tmp_path / "run", progress=None)
    result = train(config_from_dict(tiny(smears, train={"epochs": 2})), tmp_path / "run", resume=True, progress=None)
    assert [r["epoch"] for r in result.metrics] == [1, 2] and result.epochs_run == 2
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    log = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert ["epoch 1 " in log[0], "resumed from last.pt after epoch 1" in log[1], "epoch 2 " in log[2]] == [True] * 3
    # The schedule follows the new length: epoch 2 of 2 runs at cosine(1/2) = half the peak LR.
    assert result.metrics[1]["lr"] == pytest.approx(0.005)


def test_metrics_rows_after_checkpoint_are_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,train_loss,mean_fg_dice\n1,0.5,0.1\n2,0.4,\n3,0.3,0.3\n")
    rows = read_metrics_rows(path, up_to_epoch=2)
    assert [r["epoch"] for r in rows] == [1, 2] and math.isnan(rows[1]["mean_fg_dice"])


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_loss_trains_with_a_finite_loss(smears, loss):
    cfg = config_from_dict(tiny(smears, loss={"name": loss}, train={"steps_per_epoch": 1}))
    parts = build_components(cfg, torch.device("cpu"), DistContext())
    optimised = {id(p) for group in parts.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in parts.loss_fn.parameters())
    before = [p.detach().clone() for p in parts.loss_fn.parameters()]
    stats = train_one_epoch(parts, cfg)
    assert stats.steps == 1 and math.isfinite(stats.loss) and stats.loss > 0
    if loss == "dfl-learnable":  # its scale is a parameter the optimiser moves
        assert not torch.equal(before[0], next(parts.loss_fn.parameters()).detach())


def test_validation_metrics_by_hand(smears):
    cfg = config_from_dict(tiny(smears))
    parts = build_components(cfg, torch.device("cpu"), DistContext())
    label = next(iter(parts.val_loader))["label"]
    counts = torch.bincount(label.flatten(), minlength=4).double()

    class AllBackground(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 4, *x.shape[2:])
            out[:, 0] = 1.0
            return out

    result = validate(AllBackground(), parts.loss_fn, parts.val_loader, cfg, torch.device("cpu"), DistContext())
    n = counts.sum()
    assert result.dice[0] == pytest.approx(float(2 * counts[0] / (counts[0] + n)))
    assert result.iou[0] == pytest.approx(float(counts[0] / n))
    present = [c for c in range(1, 4) if counts[c] > 0]
    assert all(result.dice[c] == 0.0 for c in present)
    assert all(math.isnan(result.dice[c]) for c in range(1, 4) if counts[c] == 0)  # absent: left out
    assert result.mean_fg_dice == 0.0


@pytest.mark.parametrize(
    ("scheduler", "warmup", "expected"),
    [
        ("cosine", 0, [1.0, 0.5, (1 - math.sqrt(0.5)) / 2]),  # 0.5 * (1 + cos(pi * e / 4)), e = 0, 2, 3
        ("poly", 0, [1.0, 0.5**0.9, 0.25**0.9]),  # (1 - e / 4) ** 0.9
        ("cosine", 1, [0.5, 1.0, 0.75]),  # warm-up (e+1)/2, then cosine over the last 3 epochs
        ("none", 0, [1.0, 1.0, 1.0]),
    ],
)
def test_lr_schedule(scheduler, warmup, expected):
    cfg = config_from_dict({"optim": {"scheduler": scheduler, "warmup_epochs": warmup}, "train": {"epochs": 4}})
    epochs = [0, 2, 3] if warmup == 0 else [0, 1, 2]
    got = [lr_factor(cfg, e) for e in epochs]
    assert got == pytest.approx(expected)


def _write_config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def _metric_rows(run: Path) -> list[dict[str, float]]:
    with (run / "metrics.csv").open() as handle:
        return [{k: float(v) if v else math.nan for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(smears, tmp_path):
    values = tiny(smears, train={"epochs": 3, "steps_per_epoch": 2}, transforms={"augment": {"affine": True}})
    reference = train(config_from_dict(values), tmp_path / "ref", progress=None)
    config = _write_config(tmp_path / "cfg.yaml", values)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "medseg_dfl.cli", "train", str(config), "--output", str(run), "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        last = run / "last.pt"
        if last.is_file() and load_checkpoint(last)["epoch"] >= 1:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt")["epoch"]
    assert 1 <= killed_at < 3, f"the run was not interrupted mid-way (last.pt at epoch {killed_at})"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    rows, expected = _metric_rows(run), _metric_rows(tmp_path / "ref")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for got, want in zip(rows, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7, nan_ok=True)
    assert load_checkpoint(run / "best.pt")["best_metric"] == pytest.approx(reference.best_metric)


@pytest.mark.slow
def test_resume_is_exact_with_loader_workers(smears, tmp_path, monkeypatch):
    """Worker processes carry transform RNG state: each epoch must start them afresh from its seed."""
    import medseg_dfl.engine.training as training

    cfg = config_from_dict(tiny(smears, train={"epochs": 3, "steps_per_epoch": 2}, data={"num_workers": 1}))
    reference = train(cfg, tmp_path / "ref", progress=None)
    save_epoch = training._save_epoch

    def interrupt_after_epoch_2(cfg_, parts, state, run_dir, improved):
        save_epoch(cfg_, parts, state, run_dir, improved)
        if state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_epoch", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=None)
    monkeypatch.undo()
    resumed = train(cfg, tmp_path / "run", resume=True, progress=None)
    for got, want in zip(resumed.metrics, reference.metrics, strict=True):
        del got["seconds"], want["seconds"]
        assert got == pytest.approx(want, rel=0, abs=0, nan_ok=True)
