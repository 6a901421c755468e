"""`medseg-dfl train`: overrides, output folder, resume, and one red line for user errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medseg_dfl.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from medseg_dfl.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("cli")
    generate_sample_data(root / "data", "blood-smear", count=4, size=40, seed=2)
    values = {
        "experiment": {"name": "cli-run"},
        "data": {"root": str(root / "data"), "cache": "none"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}},
        "train": {"epochs": 3, "batch_size": 2},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_train_with_overrides_then_resume(config, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(config), "--set", "train.epochs=1", "--set", "loss.name=ce", "--output", str(run),
            "--device", "cpu", "--no-progress"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 1 epochs" in result.output and str(run / "curves.png") in result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["loss"]["name"] == "ce"
    assert [r["epoch"] for r in _rows(run)] == ["1"]

    again = runner.invoke(app, args)  # never clobber a finished run
    assert again.exit_code == 1
    assert "already holds a run (last.pt); pass --resume" in again.output

    extended = runner.invoke(app, [*args[:3], "train.epochs=2", *args[4:], "--resume"])
    assert extended.exit_code == 0, extended.output
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"]


def test_default_output_is_runs_experiment_name(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(config), "--set", "train.epochs=1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "cli-run" / "best.pt").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.epoch=1"], "unknown config key train.epoch; allowed keys under train:"),
        (["--set", "train.epochs=many"], "train.epochs: expected an integer, got 'many'"),
        (["--set", "loss.name=dfll"], "loss.name: 'dfll' is not one of dfl,"),
        (["--set", "network.name=UNet9"], "network.name: 'UNet9' is not one of UNet,"),
        (["--set", "train.epochs"], "must look like key.path=value"),
        (["--device", "tpu"], "device 'tpu' is not one of auto, cpu, cuda"),
        (["--resume"], "nothing to resume"),
        (["--set", "data.root=/no/such/folder"], "data.root is not a folder: /no/such/folder"),
        (["--set", "network.kwargs={channels: [4], strides: []}"], "cannot build network UNet"),
    ],
)
def test_user_errors_are_one_red_line(config, tmp_path, extra, message):
    result = runner.invoke(app, ["train", str(config), "--output", str(tmp_path / "r"), "--no-progress", *extra])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()  # nothing half-made


def test_missing_config_file(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "config file not found" in result.output
