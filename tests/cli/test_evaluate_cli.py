"""`medseg-dfl evaluate`: table with mean ± std per class, CSV + JSON reports, clear pairing errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from medseg_dfl.cli.main import app

runner = CliRunner()


def folders(tmp_path):
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    pred_dir.mkdir()
    truth_dir.mkdir()
    truth = np.zeros((8, 8, 4), np.uint8)
    truth[2:6, 2:6, 1:3] = 1
    pred = np.zeros_like(truth)
    pred[2:6, 2:4, 1:3] = 1  # half of the truth: Dice 2*16/(16+32) = 2/3
    for folder, data in ((pred_dir, pred), (truth_dir, truth)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), folder / "case01.nii.gz")
    return pred_dir, truth_dir


def test_evaluate_prints_table_and_writes_reports(tmp_path):
    pred_dir, truth_dir = folders(tmp_path)
    out = tmp_path / "reports" / "scores.csv"
    result = runner.invoke(
        app, ["evaluate", str(pred_dir), str(truth_dir), "--classes", "background,organ", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "organ" in result.output and "0.667 ± 0.000" in result.output
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["organ"]["iou"]["mean"] == 0.5
    assert out.read_text().splitlines()[0] == "case,class,dice,iou,hd95,asd"


def test_missing_prediction_is_one_red_line(tmp_path):
    pred_dir, truth_dir = folders(tmp_path)
    (pred_dir / "case01.nii.gz").unlink()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), pred_dir / "other.nii.gz")
    result = runner.invoke(app, ["evaluate", str(pred_dir), str(truth_dir), "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "case01.nii.gz" in result.output and "other.nii.gz" in result.output
    assert not (tmp_path / "r.csv").exists()


def test_distances_carry_their_unit_mm_for_volumes_px_for_2d_images(tmp_path):
    from PIL import Image

    pred_dir, truth_dir = folders(tmp_path)
    volumes = runner.invoke(app, ["evaluate", str(pred_dir), str(truth_dir), "-o", str(tmp_path / "v.csv")])
    assert volumes.exit_code == 0 and "hd95 (mm)" in volumes.output and "asd (mm)" in volumes.output
    flat_pred, flat_truth = tmp_path / "p2", tmp_path / "t2"
    for folder, width in ((flat_pred, 3), (flat_truth, 5)):
        folder.mkdir()
        mask = np.zeros((10, 10), np.uint8)
        mask[2:8, 2 : 2 + width] = 1
        Image.fromarray(mask).save(folder / "slide.png")
    images = runner.invoke(app, ["evaluate", str(flat_pred), str(flat_truth), "-o", str(tmp_path / "i.csv")])
    assert images.exit_code == 0 and "hd95 (px)" in images.output and "(mm)" not in images.output
    assert json.loads((tmp_path / "i.json").read_text())["distance_unit"] == "px"
