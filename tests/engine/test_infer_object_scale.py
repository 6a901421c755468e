"""infer with a single-cell (white-cell) model: each input is seen at the factor that makes the cell
it segments as large as in training, found by searching, or from --cell-diameter.

The hand-built network is scale-dependent: a stained pixel is "nucleus" (2) where a 9 x 9 window
around it is all stained and "cytoplasm" (1) near the edge, so the cytoplasm ring is 4 px wide at
the scale the network sees: 4 / factor px in the input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import medseg_dfl.engine.inference
from medseg_dfl.cli.main import app
from medseg_dfl.engine.inference import InferenceOptions, predict_folder

TRAINING_CELL = 40.0  # px: the object diameter the checkpoint records
CELL = 120  # px: the cell in the input, three times the training size


class RingNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stained = torch.sigmoid((0.6 - x.mean(1, keepdim=True)) * 40)
        interior = -F.max_pool2d(-stained, 9, stride=1, padding=4)
        return 20 * torch.cat([1 - stained, stained * (1 - interior), stained * interior], 1)


@pytest.fixture(autouse=True)
def hand_built_network(monkeypatch):
    monkeypatch.setattr(medseg_dfl.engine.inference, "build_network", lambda cfg: RingNet())


@pytest.fixture
def wbc_model(tmp_path, write_wbc_checkpoint) -> Path:
    scale = {"object_diameter_px": TRAINING_CELL, "object_source": "test",
             "cell_diameter_px": 30.0}  # a red-cell estimate: not used  # fmt: skip
    return write_wbc_checkpoint(tmp_path / "wbc.pt", scale, model_state=RingNet().state_dict())


@pytest.fixture
def cell_image(tmp_path) -> Path:
    yy, xx = np.mgrid[:200, :180]
    disc = (yy - 100) ** 2 + (xx - 90) ** 2 <= (CELL / 2) ** 2
    rgb = np.where(disc[..., None], np.uint8(60), np.uint8(235)).repeat(3, -1)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "cell.png")
    return folder


def _ring_width(mask: np.ndarray) -> float:
    """Mean cytoplasm width (px): (outer radius) - (nucleus radius), from areas."""
    outer = np.sqrt((mask > 0).sum() / np.pi)
    inner = np.sqrt((mask == 2).sum() / np.pi)
    return float(outer - inner)


def test_the_searched_factor_brings_the_cell_to_the_training_size(wbc_model, cell_image, tmp_path):
    out = tmp_path / "out"
    summary = predict_folder(wbc_model, cell_image, out, InferenceOptions(device="cpu"))
    assert summary.ok and summary.model_scale.kind == "object"
    record = json.loads((out / "scale.json").read_text())["images"]["cell.png"]
    assert record["factor"] == pytest.approx(TRAINING_CELL / CELL, rel=0.1)  # 0.354 of the ladder
    assert record["source"] == "searched (object size)"
    mask = np.asarray(Image.open(out / "cell.png"))
    assert mask.shape == (200, 180)
    assert np.sqrt(4 * (mask > 0).sum() / np.pi) == pytest.approx(CELL, rel=0.03)
    # the ring the network draws 4-6 px wide at its own scale (4 px of erosion, the stain edge's blur)
    # is that divided by the factor here, three times as wide as at the input's own size
    assert 4 <= _ring_width(mask) * record["factor"] <= 6
    plain = predict_folder(wbc_model, cell_image, tmp_path / "plain", InferenceOptions(device="cpu", rescale=False))
    assert plain.ok and 4 <= _ring_width(np.asarray(Image.open(tmp_path / "plain" / "cell.png"))) <= 6


def test_cell_diameter_fixes_the_factor_and_pixel_size_is_refused_in_one_line(wbc_model, cell_image, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["infer", str(wbc_model), str(cell_image), str(out), "--cell-diameter", "80",
                                      "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the segmented cell" in result.output
    record = json.loads((out / "scale.json").read_text())["images"]["cell.png"]
    assert record["factor"] == pytest.approx(TRAINING_CELL / 80) and record["source"] == "--cell-diameter"
    refused = CliRunner().invoke(app, ["infer", str(wbc_model), str(cell_image), str(tmp_path / "o2"),
                                       "--pixel-size", "0.1", "--device", "cpu"])  # fmt: skip
    assert refused.exit_code == 1 and "--cell-diameter" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "o2").exists()


def _write_cell(folder: Path, name: str, diameter: int) -> None:
    yy, xx = np.mgrid[:200, :180]
    disc = (yy - 100) ** 2 + (xx - 90) ** 2 <= (diameter / 2) ** 2
    Image.fromarray(np.where(disc[..., None], np.uint8(60), np.uint8(235)).repeat(3, -1)).save(folder / name)


def test_a_folder_runs_at_the_median_searched_diameter_unless_scale_per_image(wbc_model, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    _write_cell(folder, "large.png", 120)  # searched: factor 0.354 of the ladder, 113 px
    _write_cell(folder, "small.png", 80)  # searched: factor 0.5, 80 px
    shared = predict_folder(wbc_model, folder, tmp_path / "shared", InferenceOptions(device="cpu"))
    assert shared.ok
    records = json.loads((tmp_path / "shared" / "scale.json").read_text())["images"]
    large, small = records["large.png"], records["small.png"]
    assert large["factor"] == small["factor"] and large["cell_diameter_px"] == small["cell_diameter_px"]
    assert large["cell_diameter_px"] == pytest.approx((TRAINING_CELL / 0.3536 + TRAINING_CELL / 0.5) / 2, rel=0.01)
    assert large["source"] == "the median of 2 inputs searched"
    # both cells keep their relative size: the small one stays smaller than the large one in the masks
    areas = {n: (np.asarray(Image.open(tmp_path / "shared" / n)) > 0).sum() for n in records}
    assert np.sqrt(4 * areas["small.png"] / np.pi) == pytest.approx(80, rel=0.05)
    result = CliRunner().invoke(app, ["infer", str(wbc_model), str(folder), str(tmp_path / "own"), "--scale-per-image",
                                      "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "own" / "scale.json").read_text())["images"]
    assert records["large.png"]["factor"] == pytest.approx(0.3536, rel=0.01)
    assert records["small.png"]["factor"] == pytest.approx(0.5, rel=0.01)
    assert {r["source"] for r in records.values()} == {"searched (object size)"}


def test_the_folder_diameter_is_the_median_of_those_found():
    from medseg_dfl.engine.scale_search import folder_object_diameter

    assert folder_object_diameter([100.0, None, 80.0, 200.0]) == 100.0
    assert folder_object_diameter([None, None]) is None and folder_object_diameter([]) is None
