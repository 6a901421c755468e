"""`medseg-dfl sample-data`: writes the data set, prints frequencies, refuses to overwrite."""

from __future__ import annotations

import json

import nibabel as nib
import pytest
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.cli.sample_data import parse_size

runner = CliRunner()


def test_blood_smear_command_writes_files_and_refuses_overwrite(tmp_path):
    out = tmp_path / "smears"
    args = ["sample-data", str(out), "--kind", "blood-smear", "--count", "2", "--size", "64", "--seed", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["smear_000.png", "smear_001.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["smear_000.png", "smear_001.png"]
    meta = json.loads((out / "dataset.json").read_text())
    assert "platelet" in result.output and f"{meta['class_frequencies']['rbc']:.4%}" in result.output
    first = (out / "images/smear_000.png").read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already holds data" in again.output
    assert "Traceback" not in again.output and (out / "images/smear_000.png").read_bytes() == first


def test_volume_command_takes_three_sizes(tmp_path):
    result = runner.invoke(app, ["sample-data", str(tmp_path), "--kind", "volume", "--count", "1", "--size", "24,20,16"])
    assert result.exit_code == 0, result.output
    assert nib.load(tmp_path / "images/vol_000.nii.gz").shape == (24, 20, 16)


def test_bad_size_is_one_red_line(tmp_path):
    result = runner.invoke(app, ["sample-data", str(tmp_path / "x"), "--size", "big"])
    assert result.exit_code == 1 and "--size" in result.output and not (tmp_path / "x").exists()


@pytest.mark.parametrize("text, expected", [("256", 256), ("64,64,48", (64, 64, 48)), ("64x32x16", (64, 32, 16)), (None, None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected
