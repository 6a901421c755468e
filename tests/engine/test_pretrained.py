"""Shipped models by name, released checkpoints with their counting rules, and `count` without a model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES
from medseg_dfl.engine.checkpoint import load_checkpoint, release_checkpoint
from medseg_dfl.engine.counting import SmearCounter
from medseg_dfl.pretrained import DEFAULT_SMEAR_MODEL, PRETRAINED, model_card, resolve_model

CLASSES = list(SMEAR_CLASSES)


@pytest.fixture
def training_checkpoint(tmp_path, write_smear_checkpoint) -> Path:
    return write_smear_checkpoint(tmp_path / "best.pt", optimizer_state={"state": {}, "big": torch.zeros(1000)},
                                  epoch=3)  # fmt: skip


def test_release_keeps_what_inference_needs_and_the_rules_and_count_uses_them(tmp_path, training_checkpoint):
    released = release_checkpoint(training_checkpoint, tmp_path / "model.pt", {"min_platelet_probability": 0.55})
    payload = load_checkpoint(released)
    assert "optimizer_state" not in payload and "rng_state" not in payload
    assert payload["scale"]["cell_diameter_px"] == 25.0 and payload["epoch"] == 3
    assert payload["count_rules"] == {"min_platelet_probability": 0.55}
    counter = SmearCounter.from_checkpoint(released)
    assert counter.rules.min_platelet_probability == 0.55
    assert SmearCounter.from_checkpoint(training_checkpoint).rules.min_platelet_probability == 0.0  # no rules: defaults


def test_shipped_names_resolve_to_packaged_files_and_paths_stay_paths(tmp_path):
    shipped = resolve_model(DEFAULT_SMEAR_MODEL)
    assert shipped.is_file() and shipped.parent.name == "models" and shipped.suffix == ".pt"
    assert shipped.stat().st_size < 8 * 2**20  # a few MB, in the package
    assert model_card(DEFAULT_SMEAR_MODEL).is_file()
    own = tmp_path / "blood-smear"  # a folder of that name wins over the shipped model
    own.mkdir()
    assert resolve_model(str(own)) == own
    assert resolve_model(tmp_path / "elsewhere.pt") == tmp_path / "elsewhere.pt"
    assert set(PRETRAINED) == {"blood-smear"}
    with pytest.raises(ValueError, match="unknown shipped model"):
        model_card("nope")


def test_the_shipped_model_records_its_scale_and_rules():
    payload = load_checkpoint(resolve_model(DEFAULT_SMEAR_MODEL))
    assert payload["class_names"] == ["background", "rbc", "wbc", "platelet"]
    assert 20 < payload["scale"]["cell_diameter_px"] < 30
    assert 0 < payload["count_rules"]["min_platelet_probability"] < 1
    assert "optimizer_state" not in payload


def test_count_without_a_model_uses_the_shipped_one(tmp_path):
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "blood_smear_bccd" / "images" / "BloodImage_00001.png"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["count", str(sample), str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with open(out / "counts.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    # BCCD's BloodImage_00001 (a real smear at 25 px red cells): one white cell, about 20 red cells
    assert int(row["wbc"]) == 1 and 12 <= int(row["rbc"]) <= 30, row


def test_count_takes_the_model_once(tmp_path, training_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    result = CliRunner().invoke(app, ["count", str(training_checkpoint), str(folder), str(tmp_path / "o"),
                                      "--model", str(training_checkpoint)])  # fmt: skip
    assert result.exit_code == 1 and "give the model once" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["count", str(folder)])
    assert result.exit_code != 0 and "Traceback" not in result.output
