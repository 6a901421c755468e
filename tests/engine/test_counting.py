"""count: inputs resampled to the model's scale and back; the CLI writes maps, CSVs and overlays."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.transforms import Compose
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cells.instances import label_instances
from medseg_dfl.cells.scale import CellScale
from medseg_dfl.cli.main import app
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear
from medseg_dfl.engine.counting import SmearCounter

CLASSES = list(SMEAR_CLASSES)


class ThresholdPredictor:
    """Stands in for a network: stained pixels are red cells; records the size it was given."""

    def __init__(self):
        self.cfg = SimpleNamespace(data=SimpleNamespace(in_channels=3, spatial_dims=2))
        self.class_names = CLASSES
        self.transforms = Compose([])
        self.seen: list[tuple[int, ...]] = []

    def predict_probabilities(self, data):
        image = torch.as_tensor(data["image"])  # (C, H, W)
        self.seen.append(tuple(image.shape[1:]))
        stained = (image.mean(dim=0) < 215).float()
        probs = torch.zeros((len(CLASSES), *image.shape[1:]))
        probs[0], probs[1] = 1 - stained, stained
        return probs.numpy()


def test_each_magnification_reaches_the_network_at_the_training_scale_and_comes_back():
    predictor = ThresholdPredictor()
    counter = SmearCounter(predictor, model_diameter=25.0, model_scale_source="test")
    masks, counts = [], []
    for zoom in (1.0, 2.0, 3.6):
        smear = make_smear(round(160 * zoom), 4, cell_diameter=25 * zoom)
        mask, _ = counter.segment(smear.image.astype(np.float32), CellScale(smear.cell_diameter, None, "test"))
        assert mask.shape == smear.label.shape  # back at the input's own size
        masks.append(mask)
        counts.append(label_instances(mask, CLASSES, smear.cell_diameter).counts()["rbc"])
    # the network saw the same field at the same size every time (height x width)
    assert max(s[0] for s in predictor.seen) - min(s[0] for s in predictor.seen) <= 1
    base = masks[0] == 1
    for mask in masks[1:]:
        rows = np.arange(base.shape[0]) * mask.shape[0] // base.shape[0]
        down = (mask == 1)[np.ix_(rows, rows)]
        assert (down & base).sum() / (down | base).sum() > 0.85
    assert max(counts) - min(counts) <= max(1, 0.05 * counts[0]), counts


@pytest.fixture
def tiny_checkpoint(tmp_path, write_smear_checkpoint):
    return write_smear_checkpoint(tmp_path / "best.pt")


def test_count_cli_writes_instance_maps_csvs_and_overlays(tmp_path, tiny_checkpoint):
    folder, truth = tmp_path / "in", tmp_path / "truth"
    folder.mkdir()
    truth.mkdir()
    smear = make_smear(96, 1, cell_diameter=40)
    Image.fromarray(smear.image[:, :80]).save(folder / "wide.png")
    Image.fromarray(smear.label[:, :80]).save(truth / "wide.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["count", str(tiny_checkpoint), str(folder), str(out), "--cell-diameter", "40",
                                      "--truth", str(truth)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "checkpoint (test)" in result.output and "--cell-diameter" in result.output
    cells_map = np.asarray(Image.open(out / "wide_cells.png"))
    assert cells_map.shape == (96, 80) and cells_map.dtype == np.uint16
    overlay = Image.open(out / "wide_overlay.png")
    assert overlay.height > 96 and overlay.width > 160  # prediction + truth panels at full size, legend below
    pixels = np.asarray(overlay.convert("RGB"))
    # The image keeps its own resolution and nothing covers it but the contours (the legend used to
    # hide the top-left cells): most pixels are the input's, and the strip below is mostly black.
    assert (pixels[:96, :80] == smear.image[:, :80]).all(axis=-1).mean() > 0.6
    assert (pixels[96:, :80].max(axis=-1) == 0).mean() > 0.6
    with open(out / "counts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == ["wide.png"] and rows[0]["cell_diameter_px"] == "40.0"
    with open(out / "cells.csv", newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert len(cells) == int(cells_map.max())
    assert sum(int(rows[0][c]) for c in ("rbc", "wbc", "platelet")) == len(cells)
    assert json.loads((out / "scale.json").read_text())["model_cell_diameter_px"] == 25.0


def test_count_cli_names_a_missing_input_in_one_line(tmp_path, tiny_checkpoint):
    result = CliRunner().invoke(app, ["count", str(tiny_checkpoint), str(tmp_path / "missing"), str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" not in result.output and "missing" in result.output


def test_count_tile_overlap_reaches_the_predictor(tmp_path, tiny_checkpoint):
    counter = SmearCounter.from_checkpoint(tiny_checkpoint, overlap=0.97)  # what the predictor accepts
    assert counter.predictor.overlap == 0.97
    assert SmearCounter.from_checkpoint(tiny_checkpoint).predictor.overlap == 0.25  # the checkpoint's
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(make_smear(64, 2, cell_diameter=25).image).save(folder / "a.png")
    result = CliRunner().invoke(app, ["count", str(tiny_checkpoint), str(folder), str(out), "--tile-overlap", "0.97"])
    assert result.exit_code == 0, result.output
    assert (out / "a_cells.png").exists()


def test_count_refuses_to_replace_an_earlier_count_without_overwrite(tmp_path, tiny_checkpoint):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(make_smear(64, 2, cell_diameter=25).image).save(folder / "a.png")
    args = ["count", str(tiny_checkpoint), str(folder), str(out), "--cell-diameter", "25"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = (out / "counts.csv").read_bytes()
    (out / "counts.csv").write_text("earlier results\n")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "--overwrite" in refused.output and "Traceback" not in refused.output
    assert (out / "counts.csv").read_text() == "earlier results\n"
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert (out / "counts.csv").read_bytes() == before


def test_count_names_the_image_whose_estimated_scale_is_far_from_the_others(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(5):  # five fields at 30 px red cells and one at 50 px: one microscope, one outlier
        Image.fromarray(make_smear(128, seed, cell_diameter=30).image).save(folder / f"field_{seed}.png")
    Image.fromarray(make_smear(160, 9, cell_diameter=50).image).save(folder / "odd.png")
    result = CliRunner().invoke(app, ["count", str(tiny_checkpoint), str(folder), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert "check the scale of odd.png:" in line and "field_" not in line.split("check the scale of")[1].split(":")[0]
    suggested = float(line.split("pass --cell-diameter ")[1].split()[0])
    assert 26 <= suggested <= 33  # the median estimate of the five 30 px fields


def test_unusual_estimates_only_judges_estimated_scales():
    from medseg_dfl.cells.scale import ESTIMATED, unusual_estimates

    records = {f"{i}.png": {"cell_diameter_px": d, "source": ESTIMATED} for i, d in enumerate([88, 90, 86, 64, 89])}
    assert unusual_estimates(records) == (88.0, ["3.png"])
    records["3.png"]["source"] = "--cell-diameter"  # given by the user: not questioned, too few estimates left
    assert unusual_estimates(records) is None
    assert unusual_estimates({k: v for k, v in records.items() if k != "3.png"}, min_images=4) == (88.5, [])
    from pathlib import Path  # infer's records are keyed by input path

    by_path = {Path("in") / k: dict(v, source=ESTIMATED) for k, v in records.items()}
    assert unusual_estimates(by_path) == (88.0, [str(Path("in") / "3.png")])
