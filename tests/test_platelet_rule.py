"""benchmarks/platelet_rule.py without a model: the scores at a threshold, by hand, and the two
half-folds it writes (disjoint training lists, each holding out what the other trains on)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def platelet_rule():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its neighbours (bccd_counts, bccd_reference)
    try:
        spec = importlib.util.spec_from_file_location("platelet_rule", BENCHMARKS / "platelet_rule.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _records():
    # Image 1: one boxed platelet, found (sure), and one unsure platelet outside every box.
    # Image 2: one boxed platelet the network found unsure, and a white cell (never dropped).
    return [
        {"boxes": [("platelet", 0, 0, 10, 10)], "cells": [("platelet", 5, 5), ("platelet", 50, 50)],
         "means": [0.9, 0.5]},
        {"boxes": [("platelet", 0, 0, 10, 10), ("wbc", 20, 20, 60, 60)],
         "cells": [("platelet", 4, 4), ("wbc", 40, 40)], "means": [0.6, 0.3]},
    ]  # fmt: skip


@pytest.mark.parametrize(("threshold", "precision", "recall", "mae"), [
    (0.0, 2 / 3, 1.0, 0.5),   # 3 found, 2 of them in boxes; image 1 counts 2 for 1 box
    (0.55, 1.0, 1.0, 0.0),    # the unsure stray goes, the boxed 0.6 stays
    (0.7, 1.0, 0.5, 0.5),     # the boxed 0.6 goes too: image 2 counts 0 for 1 box
])  # fmt: skip
def test_scores_at_a_threshold_by_hand(platelet_rule, threshold, precision, recall, mae):
    s = platelet_rule.platelet_scores(_records(), threshold)
    assert s["precision"] == pytest.approx(precision)
    assert s["recall"] == pytest.approx(recall)
    assert s["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert s["mae"] == pytest.approx(mae)


def test_nothing_found_scores_zero_f1(platelet_rule):
    s = platelet_rule.platelet_scores(_records(), 0.95)
    assert s["f1"] == 0.0 and s["recall"] == 0.0 and s["mae"] == 1.0


def test_half_folds_hold_out_what_the_other_trains_on(platelet_rule, tmp_path):
    masks = tmp_path / "masks"
    (masks / "images").mkdir(parents=True)
    (masks / "labels").mkdir()
    training = [{"image": f"images/c{i}.png", "label": f"labels/c{i}.png"} for i in range(5)]
    spec = {"name": "x", "labels": {"0": "background"}, "training": training, "validation": [training[0]]}
    (masks / "dataset.json").write_text(json.dumps(spec))
    platelet_rule.make_folds(masks, tmp_path / "folds")
    a = json.loads((tmp_path / "folds" / "a" / "dataset.json").read_text())
    b = json.loads((tmp_path / "folds" / "b" / "dataset.json").read_text())
    assert [e["image"] for e in a["training"]] == ["images/c1.png", "images/c3.png"]
    assert a["validation"] == b["training"] and b["validation"] == a["training"]
    assert a["numTraining"] == 2 and b["numTraining"] == 3
    assert platelet_rule.held_out_names(tmp_path / "folds" / "a") == ["c0", "c2", "c4"]
    assert (tmp_path / "folds" / "a" / "images").resolve() == (masks / "images").resolve()
