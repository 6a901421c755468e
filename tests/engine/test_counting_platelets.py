"""count: platelets the network is unsure of are dropped only when asked (the rule itself:
tests/cells/test_platelet_probability.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.transforms import Compose
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cells.instances import InstanceParams
from medseg_dfl.cli.main import app
from medseg_dfl.engine.counting import CountOptions, SmearCounter

NAMES = ["background", "rbc", "wbc", "platelet"]


class TwoPlateletPredictor:
    """Stands in for a network: dark pixels are sure platelets (0.9), grey ones unsure (0.55)."""

    def __init__(self):
        self.cfg = SimpleNamespace(data=SimpleNamespace(in_channels=3, spatial_dims=2))
        self.class_names = NAMES
        self.transforms = Compose([])

    def predict_probabilities(self, data):
        grey = torch.as_tensor(data["image"]).float().mean(dim=0)  # (H, W)
        platelet = torch.where(grey < 100, 0.9, torch.where(grey < 200, 0.55, 0.0))
        probs = torch.zeros((len(NAMES), *grey.shape))
        probs[3], probs[0] = platelet, 1 - platelet
        return probs.numpy()


@pytest.mark.parametrize(("min_mean", "platelets"), [(0.0, 2), (0.5, 2), (0.67, 1)])
def test_count_drops_the_unsure_platelet_only_when_asked(tmp_path, min_mean, platelets):
    rgb = np.full((40, 60, 3), 240, np.uint8)
    rgb[10:16, 10:16] = 50  # sure platelet
    rgb[10:16, 40:46] = 150  # unsure platelet
    Image.fromarray(rgb).save(tmp_path / "smear.png")
    counter = SmearCounter(TwoPlateletPredictor(), model_diameter=25.0, model_scale_source="test")
    params = InstanceParams(min_platelet_probability=min_mean)
    result = counter.count(tmp_path / "smear.png", CountOptions(cell_diameter=25.0, instance_params=params))
    assert result.cells.counts()["platelet"] == platelets
    assert (result.cells.labels[10:16, 10:16] > 0).all()  # the sure one is always kept


def test_count_cli_refuses_a_probability_above_one(tmp_path):
    result = CliRunner().invoke(app, ["count", "model.pt", str(tmp_path), str(tmp_path / "out"),
                                      "--min-platelet-probability", "1.5"], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 2
    assert "--min-platelet-probability" in result.output and "less than or equal to 1" in result.output
    assert not (tmp_path / "out").exists()
