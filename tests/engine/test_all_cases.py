"""``data.all_cases`` / ``train --all-cases`` (nnU-Net's fold "all"): every case trains, including
the dataset.json "validation" list, nothing validates, and best.pt is the last epoch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import medseg_dfl.engine.training
import medseg_dfl.planning.timing
from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict
from medseg_dfl.data.folds import training_split, with_all_cases, with_fold
from medseg_dfl.data.synthetic import generate_sample_data
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.compare import compare_losses
from medseg_dfl.engine.components import build_components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.records import read_metrics_rows
from medseg_dfl.engine.training import train
from medseg_dfl.io.dataset_json import read_dataset_json
from medseg_dfl.planning.timing import StepTiming, fit_budget, time_training_loop

CASES = [f"smear_{i:03d}" for i in range(5)]


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    """5 smears; dataset.json lists the last one under "validation"."""
    root = tmp_path_factory.mktemp("all_cases")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0)
    return root


@pytest.fixture(scope="module")
def unlisted(tmp_path_factory) -> Path:
    """5 smears without a validation list (with val_fraction 0 nothing would validate)."""
    root = tmp_path_factory.mktemp("no_validation")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0, val_fraction=0.0)
    return root


def tiny(root: Path, **data) -> dict:
    return {
        "experiment": {"name": "all-cases", "seed": 0},
        "data": {"root": str(root), "cache": "none", **data},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "optim": {"lr": 0.01},
        "train": {"epochs": 2, "batch_size": 2, "steps_per_epoch": 1},
    }


def _no_validation(*args, **kwargs):
    raise AssertionError("validate was called in an all-cases run")


def test_the_split_trains_every_case_the_listed_validation_ones_too(smears):
    listed = [Path(e["image"]).name.removesuffix(".png") for e in read_dataset_json(smears)["validation"]]
    assert listed == ["smear_004"]  # the premise: without all_cases this case validates
    assert [p.case_id for p in training_split(config_from_dict(tiny(smears))).val_pairs] == listed
    split = training_split(config_from_dict(tiny(smears, all_cases=True, val_fraction=0.5)))
    assert sorted(p.case_id for p in split.train_pairs) == CASES and split.val_pairs == ()
    record = split.record()
    assert (record["all_cases"], record["fold"], record["folds"], record["validation"]) == (True, None, None, [])


def test_an_all_cases_run_never_validates_and_saves_best_every_epoch(smears, tmp_path, monkeypatch):
    monkeypatch.setattr(medseg_dfl.engine.training, "validate", _no_validation)
    run = tmp_path / "run"
    result = train(config_from_dict(tiny(smears, all_cases=True)), run, device="cpu", progress=None)
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["train"]) == CASES and split["validation"] == [] and split["all_cases"] is True
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == last["epoch"] == 2
    assert all(torch.equal(best["model_state"][k], v) for k, v in last["model_state"].items())
    rows = read_metrics_rows(run / "metrics.csv", up_to_epoch=2)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isnan(r["mean_fg_dice"]) and math.isnan(r["val_loss"]) for r in rows)
    assert math.isnan(result.best_metric) and (result.best_epoch, result.epochs_run) == (2, 2)
    log = (run / "train.log").read_text().splitlines()
    assert "data.all_cases: every case trains (5), nothing validates" in log[0] and len(log) == 3
    assert log[1].split(" INFO ")[1].startswith("epoch 1 train_loss=") and "val_loss" not in log[1]
    assert "nan" not in " ".join(log) and "mean_fg_dice" not in log[2]


def test_all_cases_with_a_fold_is_an_error_naming_both_keys():
    with pytest.raises(ValueError, match=r"data\.all_cases .* data\.fold \(got data\.fold 1\)"):
        config_from_dict({"data": {"all_cases": True, "fold": 1, "folds": 5}})
    folded = with_fold(config_from_dict({}), 0, 5)
    with pytest.raises(ValueError, match=r"data\.all_cases .* data\.fold \(got data\.fold 0\)"):
        with_all_cases(folded)  # train --fold 0 --all-cases
    with pytest.raises(ValueError, match=r"data\.all_cases .* data\.fold \(got data\.fold 2\)"):
        with_fold(config_from_dict({"data": {"all_cases": True}}), 2, 5)  # all_cases in the YAML, --fold given
    assert with_all_cases(config_from_dict({})).data.all_cases is True


def test_an_empty_validation_set_is_still_an_error_without_all_cases(unlisted, tmp_path):
    cfg = config_from_dict(tiny(unlisted, val_fraction=0.0))
    with pytest.raises(ValueError, match=r"need at least one training and one validation case \(got 5 and 0"):
        train(cfg, tmp_path / "run", device="cpu", progress=None)
    assert not (tmp_path / "run").exists()
    parts = build_components(with_all_cases(cfg), torch.device("cpu"), DistContext())
    assert parts.val_loader is None and len(parts.train_loader.dataset) == 5


def test_cli_all_cases_run_then_resume_with_more_epochs(smears, tmp_path):
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(tiny(smears)))
    args = ["train", str(config), "--all-cases", "--output", str(run), "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "split.json").read_text())["validation"] == []
    text = " ".join(result.output.split())
    assert "trained 2 epochs on every case; no validation (--all-cases): best.pt is the last epoch" in text
    assert "nan" not in text.lower()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["all_cases"] is True

    forgotten = CliRunner().invoke(app, [*args[:2], *args[3:], "--resume"])  # without --all-cases: another config
    assert forgotten.exit_code == 1 and "data.all_cases: True -> False" in " ".join(forgotten.output.split())
    resumed = CliRunner().invoke(app, [*args, "--resume", "--set", "train.epochs=3"])
    assert resumed.exit_code == 0, resumed.output
    assert "trained 3 epochs on every case" in " ".join(resumed.output.split())
    assert [r["epoch"] for r in read_metrics_rows(run / "metrics.csv", up_to_epoch=3)] == [1, 2, 3]
    assert load_checkpoint(run / "best.pt")["epoch"] == load_checkpoint(run / "last.pt")["epoch"] == 3


def test_cli_refuses_all_cases_with_a_fold_in_one_line(smears, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(smears)))
    result = CliRunner().invoke(app, ["train", str(config), "--fold", "0", "--all-cases", "--output",
                                      str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    assert result.exit_code == 1
    assert "cannot be combined with data.fold (got data.fold 0)" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_plan_timing_of_an_all_cases_config_times_no_validation(smears, monkeypatch):
    monkeypatch.setattr(medseg_dfl.planning.timing, "validate", _no_validation)
    cfg = config_from_dict(tiny(smears, all_cases=True))
    timing = time_training_loop(cfg, torch.device("cpu"), steps=1)
    assert timing is not None and timing.in_loop and timing.step_s > 0 and timing.val_case_s == 0.0
    budget = fit_budget(StepTiming(1.0, 0.0, "cpu", val_case_s=0.0, in_loop=True), cfg, n_train=5, n_val=0,
                        median_shape=[48, 48], minutes=1.0)  # fmt: skip
    assert (budget.val_s, budget.epochs) == (0.0, 20)  # 60 s / (3 steps x 1 s)
    assert "no validation cases -> 20 epochs" in budget.why


def test_compare_refuses_all_cases(smears, tmp_path):
    with pytest.raises(ValueError, match="data.all_cases leaves none"):
        compare_losses(config_from_dict(tiny(smears, all_cases=True)), ["ce"], 1, tmp_path / "out")
    assert not (tmp_path / "out").exists()
