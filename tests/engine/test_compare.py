"""compare_losses: aggregation checked by hand on fake runs, outputs, and resume skipping."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.compare import compare_losses, summarise_runs
from medseg_dfl.engine.compare_report import markdown_table

NAMES = ["background", "rbc", "wbc", "platelet"]
# Hand-chosen Dice per (loss, seed) and epoch for the rare classes wbc / platelet.
CURVES = {
    ("ce", 0): [(0.1, 0.0), (0.3, 0.1), (0.5, 0.3)],
    ("ce", 1): [(0.2, 0.0), (0.4, 0.2), (0.6, 0.4)],
    ("dfl", 0): [(0.3, 0.2), (0.6, 0.5), (0.8, 0.6)],
    ("dfl", 1): [(0.4, 0.3), (0.7, 0.5), (0.9, 0.8)],
}


class FakeTrainer:
    """Writes a metrics.csv + last.pt like engine.training.train, and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def __call__(self, cfg, run_dir: Path, resume: bool = False, device=None, progress=True):
        self.calls.append((cfg.loss.name, cfg.experiment.seed, resume))
        assert cfg.train.val_every == 1  # compare needs a curve point every epoch
        run_dir.mkdir(parents=True, exist_ok=True)
        header = ["epoch", "train_loss", "val_loss", *[f"dice_{c}" for c in NAMES], *[f"iou_{c}" for c in NAMES]]
        with (run_dir / "metrics.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for epoch, (wbc, plt) in enumerate(CURVES[(cfg.loss.name, cfg.experiment.seed)], start=1):
                dice = [0.99, 0.9, wbc, plt]
                writer.writerow([epoch, 1.0, 1.0, *dice, *[d / (2 - d) for d in dice]])
        (run_dir / "last.pt").write_bytes(b"x")


@pytest.fixture
def cfg():
    return config_from_dict({"train": {"epochs": 3, "val_every": 2}, "data": {"class_names": NAMES}})


def test_compare_aggregates_by_hand_and_writes_outputs(cfg, tmp_path):
    fake = FakeTrainer()
    result = compare_losses(cfg, ["ce", "dfl"], 2, tmp_path, rare_classes=["wbc", "platelet"], train_fn=fake)
    assert [c[:2] for c in fake.calls] == [("ce", 0), ("ce", 1), ("dfl", 0), ("dfl", 1)]
    ce, dfl = result.summaries
    # ce final rare Dice: seed0 (0.5+0.3)/2 = 0.4, seed1 (0.6+0.4)/2 = 0.5 -> mean 0.45, sample std 0.0707
    assert ce.mean["rare_dice"] == pytest.approx(0.45)
    assert ce.std["rare_dice"] == pytest.approx(math.sqrt(0.005))
    # dfl: seed0 0.7, seed1 0.85 -> 0.775
    assert dfl.mean["rare_dice"] == pytest.approx(0.775)
    # epochs to rare Dice >= 0.5: ce seed0 never (max 0.4), seed1 epoch 3 (0.5); dfl epochs 2 (0.55), 2 (0.6)
    assert ce.epochs_to_threshold == [None, 3]
    assert dfl.epochs_to_threshold == [2, 2]
    assert dfl.mean_epochs_to_threshold == 2.0
    # IoU of wbc for dfl seed0 = 0.8 / 1.2
    assert [r.final["iou_wbc"] for r in result.runs][2] == pytest.approx(0.8 / 1.2)

    with result.results_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["loss"] for r in rows] == ["ce", "dfl"]
    assert float(rows[1]["rare_dice_mean"]) == pytest.approx(0.775)
    assert {"dice_platelet_mean", "iou_wbc_std", "epochs_to_threshold_mean"} <= set(rows[0])
    md = result.results_md.read_text(encoding="utf-8").splitlines()
    assert md[0].startswith("| loss | Dice rbc | Dice wbc | Dice platelet | rare-class Dice")
    assert md[2].startswith("| ce |") and "not reached" not in md[2] and "(1/2)" in md[2]
    assert "**0.775 ± 0.106**" in md[3]
    assert result.convergence_png.stat().st_size > 5000
    assert result.convergence_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_skips_finished_runs_and_resumes_partial(cfg, tmp_path):
    fake = FakeTrainer()
    compare_losses(cfg, ["ce", "dfl"], 2, tmp_path, rare_classes=["wbc"], train_fn=fake)
    assert len(fake.calls) == 4
    # Simulate an interrupted run: only 2 of 3 epochs logged.
    metrics = tmp_path / "runs" / "dfl" / "seed1" / "metrics.csv"
    metrics.write_text("\n".join(metrics.read_text().splitlines()[:3]) + "\n")
    again = FakeTrainer()
    compare_losses(cfg, ["ce", "dfl"], 2, tmp_path, rare_classes=["wbc"], train_fn=again)
    assert again.calls == [("dfl", 1, True)]


def test_compare_rejects_bad_arguments(cfg, tmp_path):
    with pytest.raises(ValueError, match="unknown loss name"):
        compare_losses(cfg, ["ce", "nope"], 1, tmp_path, rare_classes=["wbc"], train_fn=FakeTrainer())
    with pytest.raises(ValueError, match="not in data.class_names"):
        compare_losses(cfg, ["ce"], 1, tmp_path, rare_classes=["neutrophil"], train_fn=FakeTrainer())


def test_markdown_table_marks_not_reached(cfg, tmp_path):
    result = compare_losses(cfg, ["ce"], 1, tmp_path, rare_classes=["platelet"], train_fn=FakeTrainer())
    table = markdown_table(NAMES, ["platelet"], 0.5, summarise_runs(result.runs))
    assert "not reached (0/1)" in table


def test_real_tiny_compare_writes_outputs_and_resume_retrains_nothing(tmp_path, monkeypatch):
    """2 losses x 1 seed of real (tiny) training: every output, right rows and columns."""
    from medseg_dfl.data.synthetic import generate_sample_data
    from medseg_dfl.engine import compare

    root = tmp_path / "smears"
    generate_sample_data(root, "blood-smear", count=4, size=48, seed=0)  # 3 train, 1 validation
    cfg = config_from_dict(
        {
            "data": {"root": str(root), "class_names": NAMES},
            "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
            "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
            "train": {"epochs": 2, "batch_size": 2},
        }
    )
    out = tmp_path / "cmp"
    result = compare_losses(cfg, ["ce", "dfl"], 1, out, rare_classes=["wbc", "platelet"], progress=None)
    assert [r.loss for r in result.runs] == ["ce", "dfl"]
    assert all(r.epochs == [1, 2] and len(r.rare_dice_curve) == 2 for r in result.runs)
    for r in result.runs:
        # The one validation slide may lack a class (MONAI Dice NaN): the rare mean skips it.
        rare = [d for d in (r.final["dice_wbc"], r.final["dice_platelet"]) if not math.isnan(d)]
        assert rare and 0.0 <= r.final["rare_dice"] <= 1.0
        assert r.final["rare_dice"] == pytest.approx(sum(rare) / len(rare))
    with result.results_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["loss"] for row in rows] == ["ce", "dfl"]
    assert [row["n_seeds"] for row in rows] == ["1", "1"]
    assert {f"dice_{c}_mean" for c in NAMES} | {f"iou_{c}_std" for c in NAMES} <= set(rows[0])
    md = result.results_md.read_text(encoding="utf-8").splitlines()
    assert len([line for line in md if line.startswith("| ce |") or line.startswith("| dfl |")]) == 2
    assert result.convergence_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(compare, "train", must_not_train)
    again = compare_losses(cfg, ["ce", "dfl"], 1, out, rare_classes=["wbc", "platelet"], progress=None)
    np.testing.assert_equal([r.final for r in again.runs], [r.final for r in result.runs])  # NaN == NaN here
