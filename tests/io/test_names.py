"""One owner each: file stems (io/names.py), dataset.json (io/dataset_json.py), infer's output suffixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg_dfl.engine.evaluation import _case_id_of_prediction
from medseg_dfl.engine.prediction_io import plan_outputs
from medseg_dfl.io.dataset_json import DATASET_JSON, read_dataset_json, write_dataset_json
from medseg_dfl.io.names import NON_MASK_SUFFIXES, OVERLAY_SUFFIX, PROBABILITIES_SUFFIX, file_stem
from medseg_dfl.io.pairing import discover_pairs
from medseg_dfl.io.writers import output_name


def test_pairing_writers_inference_and_evaluation_agree_on_a_case_name(tmp_path):
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pt.01.nii.gz").write_bytes(b"")
    [pair] = discover_pairs(tmp_path)
    assert pair.case_id == file_stem(pair.image) == "pt.01"
    assert output_name(pair.image, "_seg") == "pt.01_seg.nii.gz"
    [plan] = plan_outputs([pair.image], tmp_path / "images", tmp_path / "out", probabilities=True, overlay=True)
    assert plan.overlay.name == f"pt.01{OVERLAY_SUFFIX}.png"
    assert plan.probabilities.name == f"pt.01{PROBABILITIES_SUFFIX}.nii.gz"
    truths = {pair.case_id}
    assert _case_id_of_prediction(plan.mask, truths) == "pt.01"
    assert _case_id_of_prediction(plan.overlay, truths) is None
    assert _case_id_of_prediction(plan.probabilities, truths) is None
    assert {OVERLAY_SUFFIX, PROBABILITIES_SUFFIX} <= set(NON_MASK_SUFFIXES)


def test_dataset_json_round_trip_and_errors_name_the_file(tmp_path):
    path = write_dataset_json(tmp_path, {"training": [{"image": "a.png", "label": "b.png"}]})
    assert path == tmp_path / DATASET_JSON
    assert read_dataset_json(tmp_path)["training"][0]["label"] == "b.png"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"{DATASET_JSON}: expected a JSON object"):
        read_dataset_json(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(Path(tmp_path) / DATASET_JSON)):
        read_dataset_json(tmp_path)
