"""infer on 2D smears: each input runs at the model's training scale and comes back at its own size.

The model is hand-built and scale-dependent on purpose: a stained pixel is class 1 ("rbc") where a
9 x 9 window around it is all stained (inside a large object) and class 2 ("wbc") near an edge, so
the same smear photographed at 3x gives a different mask unless it is rescaled first.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import medseg_dfl.engine.inference
from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
from medseg_dfl.engine.inference import InferenceOptions, Predictor, predict_folder

MODEL_DIAMETER = 25.0
ZOOMS = (1, 2, 3)


class EdgeInteriorNet(torch.nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> logits of background / interior (1) / edge (2) / nothing (3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stained = torch.sigmoid((0.84 - x.mean(1, keepdim=True)) * 40)
        interior = -F.max_pool2d(-stained, 9, stride=1, padding=4)
        scores = [1 - stained, stained * interior, stained * (1 - interior), torch.zeros_like(stained)]
        return 20 * torch.cat(scores, 1)


def _checkpoint(path: Path, scale: dict | None, class_names=SMEAR_CLASSES) -> Path:
    cfg = config_from_dict({
        "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3, "class_names": list(class_names)},
        "transforms": {"patch_size": [64, 64], "intensity": "rgb_0_1", "augment": {"flip": True}},
        "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    })  # fmt: skip
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(format_version=1, model_state=EdgeInteriorNet().state_dict(), config=config_to_dict(cfg),
                   class_names=list(class_names), scale=scale)  # fmt: skip
    return save_checkpoint(path, payload)


@pytest.fixture(autouse=True)
def hand_built_network(monkeypatch):
    monkeypatch.setattr(medseg_dfl.engine.inference, "build_network", lambda cfg: EdgeInteriorNet())


@pytest.fixture
def smear_model(tmp_path):
    return _checkpoint(tmp_path / "smear.pt", {"cell_diameter_px": MODEL_DIAMETER, "source": "test"})


@pytest.fixture
def smears(tmp_path):
    """The same smear field at 1x, 2x and 3x (red cells 25, 50, 75 px): smear_1.png, ..."""
    folder = tmp_path / "smears"
    folder.mkdir()
    for zoom in ZOOMS:
        sample = make_smear(120 * zoom, 5, cell_diameter=MODEL_DIAMETER * zoom)
        Image.fromarray(sample.image).save(folder / f"smear_{zoom}.png")
    return folder


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _dice_to_1x(out: Path, cls: int) -> list[float]:
    """Dice of class ``cls`` between the 1x mask and each magnification's mask shrunk to it."""
    base = _mask(out / "smear_1.png") == cls
    scores = []
    for zoom in ZOOMS[1:]:
        shrunk = _mask(out / f"smear_{zoom}.png")[zoom // 2 :: zoom, zoom // 2 :: zoom] == cls
        scores.append(2 * (shrunk & base).sum() / (shrunk.sum() + base.sum()))
    return scores


def test_three_magnifications_give_masks_that_agree_after_rescaling(tmp_path, smear_model, smears):
    summary = predict_folder(smear_model, smears, tmp_path / "out", InferenceOptions(device="cpu"))
    assert len(summary.written) == 3 and summary.model_scale.cell_diameter_px == MODEL_DIAMETER
    for zoom in ZOOMS:  # each mask at its input's own size
        assert _mask(tmp_path / "out" / f"smear_{zoom}.png").shape == (120 * zoom, 120 * zoom)
    rescaled = _dice_to_1x(tmp_path / "out", 1) + _dice_to_1x(tmp_path / "out", 2)
    assert min(rescaled) > 0.85, rescaled
    # The same model at each input's own pixel size: the 3x smear's interiors swallow its edges.
    predict_folder(smear_model, smears, tmp_path / "plain", InferenceOptions(device="cpu", rescale=False))
    plain = _dice_to_1x(tmp_path / "plain", 1) + _dice_to_1x(tmp_path / "plain", 2)
    assert plain[1] < 0.75 and plain[3] < 0.6, plain
    scales = json.loads((tmp_path / "out" / "scale.json").read_text())
    estimated = [scales["images"][f"smear_{zoom}.png"] for zoom in ZOOMS]
    assert {e["source"] for e in estimated} == {"estimated from the image"}
    for zoom, entry in zip(ZOOMS, estimated, strict=True):  # the estimate finds each magnification
        assert entry["cell_diameter_px"] == pytest.approx(MODEL_DIAMETER * zoom, rel=0.15)
        assert entry["factor"] == pytest.approx(MODEL_DIAMETER / entry["cell_diameter_px"], rel=1e-3)
    assert not (tmp_path / "plain" / "scale.json").exists()


def test_cell_diameter_overrides_the_estimate_and_is_recorded(tmp_path, smear_model, smears):
    options = InferenceOptions(device="cpu", cell_diameter=100.0)
    predict_folder(smear_model, smears / "smear_3.png", tmp_path / "out", options)
    scales = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert scales["model_cell_diameter_px"] == MODEL_DIAMETER and scales["model_scale_source"] == "checkpoint (test)"
    assert scales["images"] == {"smear_3.png": {"cell_diameter_px": 100.0, "pixel_size_um": None,
                                                "source": "--cell-diameter", "factor": 0.25}}  # fmt: skip
    # 0.25 instead of the right 1/3: cells reach the network at 19 px, and the mask differs
    predict_folder(smear_model, smears / "smear_3.png", tmp_path / "right", InferenceOptions(device="cpu"))
    assert (_mask(tmp_path / "out" / "smear_3.png") != _mask(tmp_path / "right" / "smear_3.png")).mean() > 0.02
    options = InferenceOptions(device="cpu", pixel_size=0.1, overwrite=True)
    predict_folder(smear_model, smears / "smear_3.png", tmp_path / "out", options)
    entry = json.loads((tmp_path / "out" / "scale.json").read_text())["images"]["smear_3.png"]
    assert entry == {"cell_diameter_px": 75.0, "pixel_size_um": 0.1, "source": "--pixel-size", "factor": 0.33333}


def test_file_metadata_gives_the_scale(tmp_path, smear_model):
    sample = make_smear(240, 5, cell_diameter=50)
    # 0.15 um/px: red cells 7.5 / 0.15 = 50 px
    tifffile.imwrite(tmp_path / "s.tif", sample.image, resolution=(1e4 / 0.15, 1e4 / 0.15), resolutionunit="CENTIMETER")
    predict_folder(smear_model, tmp_path / "s.tif", tmp_path / "out", InferenceOptions(device="cpu"))
    entry = json.loads((tmp_path / "out" / "scale.json").read_text())["images"]["s.tif"]
    assert entry["source"] == "file metadata" and entry["cell_diameter_px"] == pytest.approx(50.0)


def test_no_rescale_and_models_without_a_red_cell_scale_give_todays_output(tmp_path, smear_model, smears):
    today = Predictor.from_checkpoint(smear_model, "cpu").predict_file(smears / "smear_3.png").mask  # (H, W)
    no_scale = _checkpoint(tmp_path / "old.pt", None)
    wbc_like = _checkpoint(tmp_path / "wbc.pt", {"cell_diameter_px": 64.0, "source": "test"},
                           ("background", "cytoplasm", "nucleus", "other"))  # fmt: skip
    runs = [(smear_model, InferenceOptions(device="cpu", rescale=False)), (no_scale, InferenceOptions(device="cpu")),
            (wbc_like, InferenceOptions(device="cpu"))]  # fmt: skip
    for index, (model, options) in enumerate(runs):
        out = tmp_path / f"out{index}"
        summary = predict_folder(model, smears / "smear_3.png", out, options)
        assert summary.model_scale is None and summary.scales == {}
        np.testing.assert_array_equal(_mask(out / "smear_3.png"), today)
        assert not (out / "scale.json").exists()
    rescaled = tmp_path / "rescaled"
    predict_folder(smear_model, smears / "smear_3.png", rescaled, InferenceOptions(device="cpu"))
    assert (_mask(rescaled / "smear_3.png") != today).mean() > 0.05  # the default does rescale


def test_probabilities_and_tta_come_back_at_the_input_size(tmp_path, smear_model, smears):
    options = InferenceOptions(device="cpu", probabilities=True, tta=True)
    predict_folder(smear_model, smears / "smear_2.png", tmp_path / "tta", options)
    probs = tifffile.imread(tmp_path / "tta" / "smear_2_probabilities.tif")
    assert probs.shape == (4, 240, 240)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    mask = _mask(tmp_path / "tta" / "smear_2.png")
    np.testing.assert_array_equal(probs.argmax(axis=0), mask)
    predict_folder(smear_model, smears / "smear_2.png", tmp_path / "plain", InferenceOptions(device="cpu"))
    # the network is mirror-symmetric: its flips agree with it
    assert (mask == _mask(tmp_path / "plain" / "smear_2.png")).mean() > 0.99


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cell_diameter": 40.0, "rescale": False}, "--no-rescale"),
        ({"pixel_size": 0.2, "rescale": False}, "--no-rescale"),
        ({"cell_diameter": -3.0}, "-3.0"),
    ],
)
def test_contradicting_scale_options_are_refused_before_any_output(tmp_path, smear_model, smears, options, message):
    with pytest.raises(ValueError, match=message):
        predict_folder(smear_model, smears, tmp_path / "out", InferenceOptions(device="cpu", **options))
    assert not (tmp_path / "out").exists()


def test_a_scale_for_a_model_that_records_none_is_refused(tmp_path, smears):
    with pytest.raises(ValueError, match="records no scale"):
        predict_folder(_checkpoint(tmp_path / "old.pt", None), smears, tmp_path / "out",
                       InferenceOptions(device="cpu", cell_diameter=40.0))  # fmt: skip


def test_a_second_run_adds_its_images_to_scale_json(tmp_path, smear_model, smears):
    predict_folder(smear_model, smears / "smear_1.png", tmp_path / "out", InferenceOptions(device="cpu"))
    predict_folder(smear_model, smears, tmp_path / "out", InferenceOptions(device="cpu", cell_diameter=60.0))
    images = json.loads((tmp_path / "out" / "scale.json").read_text())["images"]
    assert images["smear_1.png"]["source"] == "estimated from the image"  # skipped (done): kept as it was
    assert images["smear_2.png"]["cell_diameter_px"] == images["smear_3.png"]["cell_diameter_px"] == 60.0


def test_infer_cli_rescales_and_states_the_scale(tmp_path, smear_model, smears):
    out = tmp_path / "out"
    args = ["infer", str(smear_model), str(smears / "smear_3.png"), str(out), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--cell-diameter", "75"])
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if text.startswith("scale:"))
    assert "75.0 px in 1 input(s) (--cell-diameter)" in line and "x0.333" in line and "25.0 px" in line
    assert json.loads((out / "scale.json").read_text())["images"]["smear_3.png"]["factor"] == 0.33333
    refused = CliRunner().invoke(app, [*args, "--no-rescale", "--pixel-size", "0.1", "--overwrite"])
    assert refused.exit_code == 1 and "--no-rescale" in refused.output and "Traceback" not in refused.output


def test_scale_json_waits_for_a_concurrent_run_and_keeps_its_entries(tmp_path):
    from medseg_dfl.cells.scale import CellScale, write_scale_file
    from medseg_dfl.engine.output_claims import claim_path
    from medseg_dfl.engine.rescale import ModelScale, write_scale_records

    out = tmp_path / "out"
    out.mkdir()
    claim = claim_path(out / "scale.json")
    claim.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # a live run is merging its entries

    def other_run_finishes() -> None:
        write_scale_file(out, 25.0, "test", {"b.png": CellScale(50.0, None, "x").record(25.0)}, merge=True)
        claim.unlink()

    timer = threading.Timer(0.3, other_run_finishes)
    timer.start()
    start = time.monotonic()
    write_scale_records(out, tmp_path, ModelScale(25.0, "test"), {tmp_path / "a.png": CellScale(75.0, None, "y").record(25.0)})
    timer.join()
    assert time.monotonic() - start >= 0.25  # waited for the claim
    images = json.loads((out / "scale.json").read_text())["images"]
    assert images["a.png"]["factor"] == 0.33333 and images["b.png"]["factor"] == 0.5
    assert not claim.exists()
