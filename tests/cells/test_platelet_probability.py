"""Platelets the network is unsure of (low mean probability of their class) are dropped."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.transforms import Compose
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cells.instances import CellInstances, InstanceParams, drop_unsure_platelets
from medseg_dfl.cells.pipeline import CountOptions, SmearCounter
from medseg_dfl.cli.main import app

NAMES = ["background", "rbc", "wbc", "platelet"]


def three_cells() -> tuple[CellInstances, np.ndarray]:
    """A red cell (id 1) and two 2x2 platelets (ids 2, 3) with platelet probabilities 0.9 / 0.5."""
    labels = np.zeros((6, 10), np.int32)
    labels[0:3, 0:3] = 1
    labels[3:5, 4:6] = 2
    labels[3:5, 7:9] = 3
    probs = np.zeros((4, 6, 10))  # float64: the 0.5 mean is exact
    probs[1][labels == 1] = 0.4  # a red cell with low confidence: not a platelet, never dropped
    probs[3][labels == 2] = [0.8, 1.0, 0.9, 0.9]  # mean 0.9
    probs[3][labels == 3] = [0.6, 0.4, 0.5, 0.5]  # mean 0.5
    return CellInstances(labels, np.array([0, 1, 3, 3]), NAMES), probs


@pytest.mark.parametrize(("min_mean", "kept_classes"), [(0.0, [0, 1, 3, 3]), (0.5, [0, 1, 3, 3]),
                                                         (0.67, [0, 1, 3]), (0.95, [0, 1])])  # fmt: skip
def test_platelets_below_the_mean_probability_are_dropped_and_ids_renumbered(min_mean, kept_classes):
    cells, probs = three_cells()
    kept = drop_unsure_platelets(cells, probs, min_mean)
    assert kept.classes.tolist() == kept_classes
    assert kept.labels.max() == len(kept_classes) - 1
    assert (kept.labels[0:3, 0:3] == 1).all()  # the unsure red cell stays
    if len(kept_classes) == 3:  # the sure platelet (mean 0.9) is now cell 2; the unsure one's pixels are background
        assert (kept.labels[3:5, 4:6] == 2).all() and (kept.labels[3:5, 7:9] == 0).all()


def test_bad_probabilities_and_threshold_are_named():
    cells, probs = three_cells()
    with pytest.raises(ValueError, match=r"\(3, 6, 10\)"):
        drop_unsure_platelets(cells, probs[:3], 0.5)
    with pytest.raises(ValueError, match="1.5"):
        drop_unsure_platelets(cells, probs, 1.5)


def test_the_rule_is_off_by_default():
    assert InstanceParams().min_platelet_probability == 0.0


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
