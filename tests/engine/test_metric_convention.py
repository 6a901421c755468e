"""Training validation (metrics.csv) and `evaluate` score a case by the same convention."""

from __future__ import annotations

import math

import numpy as np
import torch

from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.evaluation import compute_case_metrics
from medseg_dfl.engine.scoring import validate


class FixedPrediction(torch.nn.Module):
    """Logits whose argmax is ``labels`` whatever the input."""

    def __init__(self, labels: np.ndarray, classes: int) -> None:
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.as_tensor(labels).long(), classes).movedim(-1, 0).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[None].expand(x.shape[0], -1, -1, -1)


class ZeroLoss(torch.nn.Module):
    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0


def test_validation_and_evaluate_agree_on_every_kind_of_class():
    truth = np.zeros((16, 16), np.int64)
    pred = np.zeros((16, 16), np.int64)
    truth[2:8, 2:8] = 1
    pred[3:8, 2:8] = 1  # class 1: overlap, Dice 60/66
    truth[10:12, 10:12] = 2  # class 2: missed -> 0
    pred[14, 14] = 3  # class 3: predicted, absent from the truth -> 0 (false positive counts)
    # class 4: absent from both -> not scored (NaN)
    cfg = config_from_dict({
        "data": {"class_names": ["bg", "a", "b", "c", "d"], "in_channels": 1},
        "transforms": {"patch_size": [16, 16]},
    })  # fmt: skip
    batch = {"image": torch.zeros(1, 1, 16, 16), "label": torch.as_tensor(truth)[None, None]}
    val = validate(FixedPrediction(pred, 5), ZeroLoss(), [batch], cfg, torch.device("cpu"), DistContext())
    evaluated = compute_case_metrics(pred, truth, 5, (1.0, 1.0))
    np.testing.assert_allclose(val.dice[1:], evaluated["dice"], rtol=1e-6)  # NaN == NaN here
    np.testing.assert_allclose(val.iou[1:], evaluated["iou"], rtol=1e-6)
    assert val.dice[1] == evaluated["dice"][0] and math.isclose(val.dice[1], 60 / 66, rel_tol=1e-6)
    assert val.dice[2] == 0.0 and val.dice[3] == 0.0 and math.isnan(val.dice[4])
    assert math.isclose(val.mean_fg_dice, (60 / 66) / 3, rel_tol=1e-6)  # the unscored class is left out
