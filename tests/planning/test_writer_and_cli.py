"""The written plan (comments say why, loads back), the `plan` command, and `preprocess` without --config."""

from __future__ import annotations

import json

import pytest
import yaml
from planning_data import REPO, write_rgb, write_volumes
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.config import load_config
from medseg_dfl.planning import plan_experiment, plan_to_yaml, write_plan

VOLUMES = REPO / "sample_data" / "volumes"


def test_written_plan_loads_back_to_the_same_config(tmp_path):
    plan = plan_experiment(VOLUMES, data_root="data/volumes")
    path = write_plan(plan, tmp_path / "plan.yaml")
    assert load_config(path) == plan.config
    assert load_config(path).data.root == "data/volumes"


def test_every_planned_value_has_its_reason_above_it():
    text = plan_to_yaml(plan_experiment(VOLUMES), command="medseg-dfl plan sample_data/volumes")
    lines = text.splitlines()
    patch = next(i for i, line in enumerate(lines) if line.strip().startswith("patch_size:"))
    above = " ".join(line.strip("# ") for line in lines[patch - 3 : patch])
    assert "median shape 64x64x48 at 0.93x0.93x2.5 mm -> patch 64x64x48" in above
    intensity = next(i for i, line in enumerate(lines) if line.strip().startswith("intensity:"))
    assert "CT (nnU-Net): clip to the foreground 0.5/99.5 percentiles" in " ".join(lines[intensity - 3 : intensity])
    assert "made by: medseg-dfl plan sample_data/volumes" in text
    # every key line carries a comment, on it or above it
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and line.rstrip().endswith(":") is False:
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), line
    yaml.safe_load(text)  # comments are free-form, the YAML stays valid


def test_set_overrides_apply_on_top_of_the_plan():
    plan = plan_experiment(VOLUMES, overrides=["train.epochs=3", "loss.name=dice-ce"])
    assert (plan.config.train.epochs, plan.config.loss.name) == (3, "dice-ce")
    assert plan.reasons["train.epochs"] == "set by --set"


@pytest.mark.slow  # ~25 s on a loaded 2-core machine (timed steps, first loss compile)
def test_time_budget_times_steps_and_fits_the_epochs(tmp_path):
    plan = plan_experiment(write_rgb(tmp_path / "w", n=5, size=32), time_budget_min=0.5)
    train = plan.config.train
    assert train.epochs >= 1 and train.steps_per_epoch >= 1 and 1 <= train.val_every <= train.epochs
    assert "s per step measured" in plan.reasons["train.epochs"]


def test_time_budget_times_the_network_the_user_set(tmp_path, monkeypatch):
    import medseg_dfl.planning.plan as plan_module

    timed = []

    def fake_step(cfg, device):  # what the budget is fitted to: the overridden network, not the planned one
        timed.append(cfg.network.name)
        return 0.5 if cfg.network.name == "UNet" else 5.0

    monkeypatch.setattr(plan_module, "time_training_step", fake_step)
    monkeypatch.setattr(plan_module, "time_validation_case", lambda cfg, device, shape: 0.01)
    monkeypatch.setattr(plan_module, "time_training_loop", lambda cfg, device: None)  # the isolated step only
    unet = ["network.name=UNet", "network.kwargs={channels: [8, 16], strides: [2], num_res_units: 0}"]
    plan = plan_experiment(write_rgb(tmp_path / "w", n=5, size=32), time_budget_min=1.0, overrides=unet)
    assert set(timed) == {"UNet"}
    assert "0.50 s per step" in plan.reasons["train.epochs"] or "network 0.50 s" in plan.reasons["train.epochs"]
    assert plan.config.network.name == "UNet"


def test_the_budget_is_fitted_to_the_step_timed_in_the_training_loop(tmp_path, monkeypatch):
    import medseg_dfl.planning.plan as plan_module
    from medseg_dfl.planning.timing import StepTiming

    looped = []

    def loop(cfg, device):  # train's loop: 2 s per step, 0.5 s per validation case, 1 s of files per epoch
        looped.append(cfg.network.name)
        return StepTiming(2.0, 0.0, "cpu", val_case_s=0.5, in_loop=True, epoch_s=1.0)

    monkeypatch.setattr(plan_module, "time_training_step", lambda cfg, device: 0.01)  # isolated: far cheaper
    monkeypatch.setattr(plan_module, "time_training_loop", loop)
    plan = plan_experiment(write_rgb(tmp_path / "w", n=5, size=32), time_budget_min=1.0, network_candidates=False)
    train = plan.config.train
    # 4 training cases -> steps of 2 s; 1 validation case of 0.5 s: epochs = 60 s / (steps x 2 s + 1 s + 0.5 s)
    assert train.epochs == int(60 // (train.steps_per_epoch * 2.0 + 1.0 + 0.5 / train.val_every)) and train.epochs < 30
    assert looped == ["DynUNet"]
    assert "2.00 s per step measured in the training loop" in plan.reasons["train.epochs"]
    assert "with 1.0 s of checkpoint and curves" in plan.reasons["train.epochs"]


@pytest.mark.slow  # builds train's components on a few cases and runs 7 steps
def test_training_loop_timing_runs_train_s_loop_on_a_few_cases(tmp_path):
    import torch

    from medseg_dfl.planning.timing import time_training_loop

    cfg = plan_experiment(write_rgb(tmp_path / "w", n=6, size=32)).config
    timing = time_training_loop(cfg, torch.device("cpu"), steps=2)
    assert timing.in_loop and timing.step_s > 0 and timing.val_case_s > 0 and timing.augment_s == 0.0
    assert timing.epoch_s > 0  # last.pt and curves.png written (to a temporary folder) and timed
    assert not any(p.suffix == ".pt" for p in tmp_path.rglob("*"))  # nothing written: no run folder, no checkpoint


def test_plan_command_writes_and_refuses_to_overwrite(tmp_path):
    data, out = write_rgb(tmp_path / "w"), tmp_path / "wbc.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(data), "--output", str(out), "--data-root", "data/wbc"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and load_config(out).data.class_names == ["background", "cytoplasm", "nucleus"]
    again = runner.invoke(app, ["plan", str(data), "--output", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_plan_command_instance_masks_one_red_line(tmp_path):
    from planning_data import write_instances

    result = CliRunner().invoke(app, ["plan", str(write_instances(tmp_path / "cells")), "-o", str(tmp_path / "p.yaml")])
    assert result.exit_code == 1
    assert "instance masks" in result.output and not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("names", [("background", "cytoplasm", "nucleus")])
def test_preprocess_without_config_uses_the_plan_not_the_smear_classes(tmp_path, names):
    data = write_rgb(tmp_path / "w", names=names)
    result = CliRunner().invoke(app, ["preprocess", str(data), str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert list(written["labels"].values()) == list(names)
    assert "rbc" not in result.output


@pytest.mark.parametrize("name", ["hippocampus_3d.yaml", "wbc_2d.yaml"])
def test_shipped_real_data_configs_are_plans(name):
    path = REPO / "configs" / name
    if not path.is_file():
        pytest.skip(f"{name} not generated yet")
    text = path.read_text()
    cfg = load_config(path)
    assert "made by: medseg-dfl plan data/" in text and cfg.data.root.startswith("data/")
    assert cfg.network.name == "DynUNet" and cfg.loss.name == "dice-ce"
    lines = text.splitlines()
    for key in ("class_names", "in_channels", "patch_size", "target_spacing", "intensity", "batch_size", "epochs"):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        assert lines[i - 1].lstrip().startswith("#"), f"{name}: no reason above {key}"


def test_keys_the_planner_did_not_decide_carry_the_config_key_help():
    from medseg_dfl.config import KEY_HELP

    plan = plan_experiment(VOLUMES)
    lines = plan_to_yaml(plan).splitlines()
    assert "train.deterministic" not in plan.reasons and "optim.momentum" not in plan.reasons
    assert f"  deterministic: true  # {KEY_HELP['train.deterministic']}" in lines
    assert f"  momentum: 0.9  # {KEY_HELP['optim.momentum']}" in lines


def test_plan_without_dataset_json_says_how_to_name_the_classes(tmp_path):
    data = write_rgb(tmp_path / "w", n=4)
    (data / "dataset.json").unlink()  # images/ + labels/ only: the classes can only be numbered
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(data), "--output", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "classes are only numbered (class_1, class_2: no dataset.json 'labels')" in text
    assert "--set data.class_names=[background,NAME1,NAME2]" in text
    assert '"labels": {"0": "background", "1": "NAME1", "2": "NAME2"}' in text
    named = runner.invoke(app, ["plan", str(data), "--output", str(tmp_path / "q.yaml"),
                                "--set", "data.class_names=[background,cytoplasm,nucleus]"])  # fmt: skip
    assert named.exit_code == 0, named.output
    assert "only numbered" not in named.output
    assert load_config(tmp_path / "q.yaml").data.class_names == ["background", "cytoplasm", "nucleus"]



def test_deep_supervision_plans_are_fitted_to_the_step_with_the_heads(tmp_path, monkeypatch):
    import medseg_dfl.planning.plan as plan_module

    data = write_volumes(tmp_path / "v", channels=1)
    monkeypatch.setattr(plan_module, "time_validation_case", lambda cfg, device, shape: 0.0)
    monkeypatch.setattr(plan_module, "time_training_loop", lambda cfg, device: None)  # the isolated step only
    monkeypatch.setattr(plan_module, "time_augmentation", lambda cfg, items: 0.0)  # the step alone: exact ratios

    def plan_with(heads_cost: float) -> tuple[list[bool], object]:
        timed = []

        def fake_step(cfg, device):  # the extra head's loss makes the step heads_cost times as long
            supervised = bool(cfg.network.kwargs.get("deep_supervision"))
            timed.append(supervised)
            return 0.05 * (heads_cost if supervised else 1.0)

        monkeypatch.setattr(plan_module, "time_training_step", fake_step)
        return timed, plan_experiment(data, time_budget_min=1.0, network_candidates=False, overrides=overrides).config

    overrides = None

    timed, same = plan_with(1.0)
    assert timed == [False, True]  # timed as planned, then again with the heads once they are on
    assert same.network.kwargs["deep_supervision"] is True and same.train.epochs >= 50  # long 3D DynUNet run
    _, dearer = plan_with(2.0)
    assert dearer.network.kwargs["deep_supervision"] is True
    assert dearer.train.epochs == pytest.approx(same.train.epochs / 2, rel=0.1)
    overrides = ["network.name=UNet", "network.kwargs={channels: [8, 16], strides: [2], num_res_units: 0}"]
    timed, users = plan_with(2.0)
    assert timed == [False] and "deep_supervision" not in users.network.kwargs  # the user's network, timed once
