"""Platelets the network is unsure of (low mean probability of their class) are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from medseg_dfl.cells.instances import CellInstances, InstanceParams, drop_unsure_platelets

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
