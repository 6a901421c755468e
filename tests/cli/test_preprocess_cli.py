"""`medseg-dfl preprocess`: summary, one line per bad file, exit codes, --skip-bad."""

from __future__ import annotations

import json

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cli.main import app

runner = CliRunner()


def _write_smears(root, n=4, size=20):
    rng = np.random.default_rng(9)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        label[:10] = 1
        label[15, 15:17] = 2
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "labels" / f"s{i}.png")
    return root


def test_preprocess_writes_outputs_and_prints_frequencies(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    result = runner.invoke(app, ["preprocess", str(raw), str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    fp = json.loads((tmp_path / "out" / "fingerprint.json").read_text())
    # No --config: the classes are planned from the label values seen (0..2), not the sample data's names.
    assert fp["class_counts"] == [4 * 198, 4 * 200, 4 * 2]
    assert "4 pairs (3 train, 1 validation)" in result.output and "class_1 50.00%" in result.output


def test_bad_files_one_line_each_and_nonzero_exit(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(raw / "labels" / "s1.png")
    (raw / "images" / "s3.png").write_bytes(b"garbage")
    config = tmp_path / "four_classes.yaml"  # the default class names: labels 0..3
    config.write_text(yaml.safe_dump({"data": {"class_names": ["background", "rbc", "wbc", "platelet"]}}))
    result = runner.invoke(app, ["preprocess", str(raw), str(tmp_path / "out"), "-c", str(config)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "s1.png" in line or "s3.png" in line]
    assert any("labels/s1.png: label values [9]" in line for line in lines)
    assert any("images/s3.png:" in line for line in lines)
    assert "bad files (2)" in result.output and "2 of 4 pairs failed validation" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    skipped = runner.invoke(app, ["preprocess", str(raw), str(tmp_path / "out"), "-c", str(config), "--skip-bad", "-q"])
    assert skipped.exit_code == 0, skipped.output
    assert "2 pairs" in skipped.output and "skipped bad files (2)" in skipped.output


def test_config_option_and_refusal_inside_input(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_names": ["bg", "top", "dot"]}}))
    result = runner.invoke(app, ["preprocess", str(raw), str(tmp_path / "out"), "-c", str(config), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["labels"] == {"0": "bg", "1": "top", "2": "dot"}
    inside = runner.invoke(app, ["preprocess", str(raw), str(raw / "pre"), "-q"])
    assert inside.exit_code == 1 and "inside" in inside.output and not (raw / "pre").exists()
    missing = runner.invoke(app, ["preprocess", str(tmp_path / "nope"), str(tmp_path / "o2"), "-q"])
    assert missing.exit_code == 1 and "not found" in missing.output
