"""`plan --all-cases`: a final model on every case, its epochs fitted without validation time."""

from __future__ import annotations

import math

from planning_data import write_rgb
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.config import load_config
from medseg_dfl.planning import plan_experiment
from medseg_dfl.planning.timing import StepTiming


def _fake_loop(seen: list):
    def loop(cfg, device):  # train's loop: 2 s per step, 0.5 s per validation case, 1 s of files per epoch
        seen.append(cfg.data.all_cases)
        return StepTiming(2.0, 0.0, "cpu", val_case_s=0.5, in_loop=True, epoch_s=1.0)

    return loop


def test_all_cases_plan_fits_every_case_and_no_validation_into_the_budget(tmp_path, monkeypatch):
    import medseg_dfl.planning.plan as plan_module

    seen: list = []
    monkeypatch.setattr(plan_module, "time_training_step", lambda cfg, device: 0.01)
    monkeypatch.setattr(plan_module, "time_training_loop", _fake_loop(seen))
    data = write_rgb(tmp_path / "w", n=5, size=32)
    validated = plan_experiment(data, time_budget_min=1.0, network_candidates=False).config
    final = plan_experiment(data, time_budget_min=1.0, network_candidates=False, all_cases=True)
    cfg = final.config
    assert seen == [False, True]  # the loop was timed as each plan trains
    assert cfg.data.all_cases is True and validated.data.all_cases is False
    # 5 cases train (4 with validation): steps of 2 s, 1 s of files, no validation: 60 s / (steps x 2 + 1)
    assert cfg.train.steps_per_epoch == math.ceil(5 / cfg.train.batch_size)
    assert cfg.train.epochs == int(60 // (cfg.train.steps_per_epoch * 2.0 + 1.0))
    assert "no validation cases" in final.reasons["train.epochs"]
    assert "fold 'all'" in final.reasons["data.all_cases"] and "unused" in final.reasons["train.val_every"]
    assert cfg.experiment.name == validated.experiment.name + "_all"  # runs/NAME_all: beside the validated run


def test_plan_command_all_cases_writes_the_key_and_refuses_a_fold(tmp_path):
    data, out = write_rgb(tmp_path / "w", n=5, size=32), tmp_path / "all.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(data), "--all-cases", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_config(out).data.all_cases is True
    assert "every case trains and none validates" in out.read_text()
    clash = runner.invoke(app, ["plan", str(data), "--all-cases", "--set", "data.fold=0", "-o", str(tmp_path / "x.yaml")])
    assert clash.exit_code == 1 and "data.fold" in clash.output
    assert not (tmp_path / "x.yaml").exists()
