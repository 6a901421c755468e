"""A fold run takes everything from that fold's training cases, discovered once: the red-cell scale
it records in its checkpoint, split.json, and (through ``train --fold/--folds``) its config.

The smears of fold 0's training cases have small red cells, the others large ones: a scale measured
on the wrong images (the plain val_fraction split, as before) is off by far more than the estimate's
own error, and names a different number of images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import medseg_dfl.cells.scale
import medseg_dfl.data.folds
from medseg_dfl.cells.scale import scale_from_config
from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict
from medseg_dfl.data.folds import fold_case_ids, training_split
from medseg_dfl.data.synthetic_smear import make_smear
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.io.pairing import discover_pairs

IDS = [f"smear{i}" for i in range(4)]
FOLD_TRAIN, FOLD_VAL = fold_case_ids(IDS, 0, 2, seed=0)
SMALL, LARGE = 16.0, 32.0  # red-cell diameters (px): fold 0's training cases, the others


@pytest.fixture(scope="module")
def fold_smears(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fold_smears")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for k, case in enumerate(IDS):
        smear = make_smear(96, k, cell_diameter=SMALL if case in FOLD_TRAIN else LARGE)
        Image.fromarray(smear.image).save(root / "images" / f"{case}.png")
        Image.fromarray(smear.label).save(root / "labels" / f"{case}.png")
    return root


def _values(root: Path) -> dict:
    return {
        "experiment": {"name": "fold-run", "seed": 0},
        "data": {"root": str(root), "cache": "none", "val_fraction": 0.2},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 1},
    }


def test_the_fold_split_differs_from_the_plain_split_here(fold_smears):
    """The premise of the tests below: without the fold, training would see a large-cell image too."""
    assert len(FOLD_TRAIN) == 2 and not set(FOLD_TRAIN) & set(FOLD_VAL)
    plain = training_split(config_from_dict(_values(fold_smears)))
    assert len(plain.train_pairs) == 3 and {p.case_id for p in plain.train_pairs} - set(FOLD_TRAIN)


def test_scale_from_config_reads_only_the_folds_training_images(fold_smears, monkeypatch):
    read: list[str] = []
    original = medseg_dfl.cells.scale.load_image

    def counting_load(path, *args, **kwargs):
        read.append(Path(path).stem)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(medseg_dfl.cells.scale, "load_image", counting_load)
    values = _values(fold_smears)
    values["data"].update(fold=0, folds=2)
    scale = scale_from_config(config_from_dict(values))
    assert sorted(read) == FOLD_TRAIN
    assert scale["cell_diameter_px"] == pytest.approx(SMALL, rel=0.1)
    assert scale["source"] == "estimated from 2 training images"


def test_train_fold_records_that_folds_scale_split_and_config(fold_smears, tmp_path, monkeypatch):
    config = tmp_path / "fold.yaml"
    config.write_text(yaml.safe_dump(_values(fold_smears)))
    run = tmp_path / "run"
    discoveries = []

    def counting_discover(root):
        discoveries.append(root)
        return discover_pairs(root)

    monkeypatch.setattr(medseg_dfl.data.folds, "discover_pairs", counting_discover)
    result = CliRunner().invoke(app, ["train", str(config), "--fold", "0", "--folds", "2", "--output", str(run),
                                      "--device", "cpu", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run / "split.json").read_text()) == {
        "fold": 0, "folds": 2, "all_cases": False, "seed": 0, "train": FOLD_TRAIN, "validation": FOLD_VAL,
    }  # fmt: skip
    scale = load_checkpoint(run / "best.pt")["scale"]
    assert scale["cell_diameter_px"] == pytest.approx(SMALL, rel=0.1)
    assert scale["source"] == "estimated from 2 training images"
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (saved["fold"], saved["folds"]) == (0, 2)
    assert len(discoveries) == 1  # input check, datasets, split.json and scale share one discovery


def test_train_refuses_a_fold_outside_its_folds_in_one_line(fold_smears, tmp_path):
    config = tmp_path / "fold.yaml"
    config.write_text(yaml.safe_dump(_values(fold_smears)))
    result = CliRunner().invoke(app, ["train", str(config), "--fold", "2", "--folds", "2", "--output",
                                      str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    assert result.exit_code == 1
    assert "fold must be in 0..1 for 2 folds, got 2" in result.output
    assert not (tmp_path / "run").exists()
