"""`medseg-dfl datasets list | fetch`: the table, a summary line, one red line on failure."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cli.main import app

runner = CliRunner()


def test_list_names_every_dataset_with_its_licence():
    result = runner.invoke(app, ["datasets", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("hippocampus", "wbc", "bccd", "CC-BY-SA 4.0", "GPL-3.0", "MIT"):
        assert text in result.output


def test_fetch_prints_a_summary(tmp_path):
    folder = tmp_path / "repo" / "Dataset 1"
    folder.mkdir(parents=True)
    for stem in ("001", "002"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{stem}.bmp")
        Image.fromarray(np.full((4, 4), 128, np.uint8)).save(folder / f"{stem}.png")
    result = runner.invoke(app, ["datasets", "fetch", "wbc", str(tmp_path / "out"), "--from", str(tmp_path / "repo"),
                                 "-q"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "training 1; validation 1; test 0" in result.output
    assert (tmp_path / "out" / "labels" / "d1_001.png").is_file()


def test_fetch_failures_are_one_line(tmp_path):
    result = runner.invoke(app, ["datasets", "fetch", "wbc", str(tmp_path / "out"), "--from", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: --from {tmp_path / 'nope'}: not found"]
    result = runner.invoke(app, ["datasets", "fetch", "mnist", str(tmp_path / "out")])
    assert result.exit_code == 1 and "unknown dataset 'mnist' (known: bccd, bccd-masks, hippocampus, wbc)" in result.output
    assert not (tmp_path / "out").exists()
