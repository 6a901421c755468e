"""Progress: the library reports through a callback, the CLI draws a bar on a terminal and plain
lines elsewhere (log files, CI, nohup)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medseg_dfl.cli._progress import cli_progress
from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict
from medseg_dfl.data.synthetic import generate_sample_data
from medseg_dfl.engine.training import train


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("progress")
    generate_sample_data(root, "blood-smear", count=5, size=40, seed=1)  # 4 train, 1 validation
    return root


def _values(root: Path) -> dict:
    return {
        "data": {"root": str(root), "cache": "none"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "train": {"epochs": 2, "batch_size": 1},
    }


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()  # isatty() is False, like a log file
    with cli_progress("segmenting", every=2, stream=stream) as report:
        for done in range(6):
            report(done, 5, f"f{done}.png")
    assert stream.getvalue().splitlines() == ["segmenting 2/5  f2.png", "segmenting 4/5  f4.png",
                                              "segmenting 5/5  f5.png"]  # fmt: skip
    with cli_progress("x", enabled=False, stream=stream) as report:
        assert report is None


def test_train_reports_steps_and_one_finished_epoch_without_nan(smears, tmp_path):
    calls: list[tuple[int, int | None, str]] = []
    train(config_from_dict(_values(smears)), tmp_path / "run", progress=lambda *c: calls.append(c))
    starts = [c for c in calls if c[0] == 0]
    finished = [c for c in calls if c[0] == c[1]]
    assert [c[2] for c in starts] == ["epoch 1/2", f"epoch 2/2  val fg Dice {finished[0][2].split()[-1]}"]
    assert len(finished) == 2 and all(c[1] == 4 for c in calls)  # 4 steps per epoch, each epoch once
    assert all("val fg Dice" in c[2] for c in finished)
    assert [c[0] for c in calls[:5]] == [0, 1, 2, 3, 4]
    assert not any("nan" in c[2] for c in calls)  # no "loss nan" before the first batch


def test_train_cli_prints_one_plain_line_per_epoch_in_a_log(smears, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_values(smears)))
    result = CliRunner().invoke(app, ["train", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("train ")]
    assert len(lines) == 2, result.output
    assert all(re.fullmatch(r"train 4/4  epoch [12]/2  loss \d\.\d{4}  val fg Dice \d\.\d{3}", line) for line in lines)
