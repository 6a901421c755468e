"""Evaluation: hand-computed Dice/IoU/HD95/ASD, empty-class rules, pairing and geometry errors, reports."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg_dfl.engine.evaluation import compute_case_metrics, evaluate_folders, summary_table

SPACING = (2.0, 1.0, 3.0)  # anisotropic: axis 0 is 2 mm


def squares() -> tuple[np.ndarray, np.ndarray]:
    """Two 4x4 squares (one slice thick) 1 voxel apart along axis 0; class 2 only in the truth."""
    pred = np.zeros((10, 10, 1), dtype=np.uint8)
    truth = np.zeros((10, 10, 1), dtype=np.uint8)
    pred[2:6, 2:6] = 1
    truth[3:7, 2:6] = 1
    truth[8, 8] = 2
    return pred, truth


def test_hand_computed_values_with_anisotropic_spacing():
    pred, truth = squares()
    m = compute_case_metrics(pred[..., 0], truth[..., 0], 4, SPACING[:2])
    # Overlap 3x4 = 12 of two 16-voxel squares: Dice 24/32, IoU 12/20.
    assert m["dice"][0] == pytest.approx(0.75) and m["iou"][0] == pytest.approx(0.6)
    # Edge voxels (12 per square): 4 are one voxel (2 mm) from the other edge along axis 0, 2 are 1 mm
    # away along axis 1, 6 touch: per direction [2,2,2,2,1,1,0x6]; both directions alike.
    assert m["hd95"][0] == pytest.approx(2.0)  # 95th percentile -> 2 mm (1 voxel with unit spacing)
    assert m["asd"][0] == pytest.approx((4 * 2 + 2 * 1) / 12)
    unit = compute_case_metrics(pred[..., 0], truth[..., 0], 4, (1.0, 1.0))
    assert unit["hd95"][0] == pytest.approx(1.0) and unit["asd"][0] == pytest.approx(0.5)
    # Class 2 is missed (only in the truth): Dice 0, distances +inf. Class 3 is absent in both.
    assert m["dice"][1] == 0.0 and math.isinf(m["hd95"][1]) and math.isinf(m["asd"][1])
    assert all(math.isnan(m[k][2]) for k in ("dice", "iou", "hd95", "asd"))  # not scored


def write_nifti(path: Path, data: np.ndarray, spacing=SPACING) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), path)
    return path


def make_folders(tmp_path: Path) -> tuple[Path, Path]:
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    pred_dir.mkdir()
    truth_dir.mkdir()
    pred, truth = squares()
    write_nifti(pred_dir / "case01_seg.nii.gz", pred)  # "<stem>_seg" pairs with "<stem>"
    write_nifti(truth_dir / "case01.nii.gz", truth)
    write_nifti(pred_dir / "case02.nii.gz", truth)  # perfect
    write_nifti(truth_dir / "case02.nii.gz", truth)
    Image.new("RGB", (8, 8)).save(pred_dir / "case01_overlay.png")  # not a mask: ignored
    return pred_dir, truth_dir


def test_folders_report_csv_json_and_summary(tmp_path):
    pred_dir, truth_dir = make_folders(tmp_path)
    report = evaluate_folders(pred_dir, truth_dir, ["background", "organ", "lesion"], output=tmp_path / "r.csv")
    rows = list(csv.DictReader(open(report.csv_path)))
    assert [(r["case"], r["class"]) for r in rows] == [
        ("case01", "organ"), ("case01", "lesion"), ("case02", "organ"), ("case02", "lesion")
    ]  # fmt: skip
    assert float(rows[0]["dice"]) == pytest.approx(0.75) and float(rows[0]["hd95"]) == pytest.approx(2.0)
    assert rows[1]["hd95"] == "inf"
    summary = json.loads(report.json_path.read_text())["summary"]
    assert summary["organ"]["dice"]["mean"] == pytest.approx((0.75 + 1.0) / 2)
    assert summary["organ"]["dice"]["std"] == pytest.approx(0.125)
    # inf (missed lesion in case01) is left out of the distance mean: n says so.
    assert summary["lesion"]["hd95"] == {"mean": 0.0, "std": 0.0, "n": 1}
    assert summary["lesion"]["dice"]["mean"] == pytest.approx(0.5)
    table = summary_table(report)
    assert table.row_count == 2 and [c.header for c in table.columns][1:] == ["dice", "iou", "hd95 (mm)", "asd (mm)"]
    assert json.loads(report.json_path.read_text())["distance_unit"] == "mm"  # volumes: from the spacing


def test_class_names_default_to_highest_label_found(tmp_path):
    pred_dir, truth_dir = make_folders(tmp_path)
    report = evaluate_folders(pred_dir, truth_dir)
    assert report.class_names == ["class_0", "class_1", "class_2"]
    assert report.cases[1].metrics["dice"].tolist() == [1.0, 1.0]


def test_missing_and_extra_files_are_named(tmp_path):
    pred_dir, truth_dir = make_folders(tmp_path)
    (pred_dir / "case02.nii.gz").rename(pred_dir / "case03.nii.gz")
    with pytest.raises(ValueError, match=r"no prediction in .* for case02\.nii\.gz.*no truth in .* for case03\.nii\.gz"):
        evaluate_folders(pred_dir, truth_dir)


def test_shape_and_geometry_mismatches_name_both_files(tmp_path):
    pred_dir, truth_dir = make_folders(tmp_path)
    write_nifti(pred_dir / "case02.nii.gz", np.zeros((10, 9, 1), np.uint8))
    with pytest.raises(ValueError, match=r"shape mismatch: .*case02\.nii\.gz.*truth/case02\.nii\.gz"):
        evaluate_folders(pred_dir, truth_dir)
    write_nifti(pred_dir / "case02.nii.gz", squares()[1], spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ValueError, match=r"geometry mismatch: .*pred/case02\.nii\.gz and .*truth/case02\.nii\.gz"):
        evaluate_folders(pred_dir, truth_dir)


def test_label_outside_class_names_is_an_error(tmp_path):
    pred_dir, truth_dir = make_folders(tmp_path)
    with pytest.raises(ValueError, match="label 2 but only 2 classes"):
        evaluate_folders(pred_dir, truth_dir, ["background", "organ"])
