"""Fingerprint: class frequencies, medians, RAS-ordered spacing, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg_dfl.config import config_from_dict
from medseg_dfl.data.fingerprint import compute_fingerprint, load_fingerprint, save_fingerprint
from medseg_dfl.io.checks import PairStats
from medseg_dfl.transforms import fingerprint_spacing, fingerprint_window

CFG_3D = config_from_dict(
    {"data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["bg", "organ", "lesion"]},
     "transforms": {"patch_size": [8, 8, 8]}}
)


def _stats(case_id, counts, spacing=(1.0, 1.0, 2.0), affine=None, low=-100.0, high=200.0, shape=(10, 10, 5)):
    affine = np.diag([*spacing, 1.0]) if affine is None else affine
    return PairStats(
        case_id=case_id, shape=shape, spacing=spacing, affine=affine, channels=1,
        class_counts=np.asarray(counts, dtype=np.int64),
        intensity_percentiles=[{0.5: low, 50.0: (low + high) / 2, 99.5: high}],
        mean=(0.0,), std=(1.0,), intensity_region="foreground",
    )


def test_class_frequencies_are_summed_counts_over_total():
    fp = compute_fingerprint([_stats("a", [90, 9, 1]), _stats("b", [300, 0, 0])], CFG_3D)
    assert fp["class_counts"] == [390, 9, 1]
    assert fp["class_frequencies"] == pytest.approx([390 / 400, 9 / 400, 1 / 400])
    assert fp["class_names"] == ["bg", "organ", "lesion"] and fp["num_cases"] == 2 and fp["cases"] == ["a", "b"]


def test_medians_of_shapes_spacings_and_percentiles():
    stats = [
        _stats("a", [1, 1, 1], spacing=(0.5, 0.5, 3.0), low=-10, high=100, shape=(10, 20, 5)),
        _stats("b", [1, 1, 1], spacing=(0.7, 0.7, 1.0), low=0, high=300, shape=(30, 20, 7)),
        _stats("c", [1, 1, 1], spacing=(0.9, 0.9, 2.0), low=50, high=200, shape=(20, 20, 9)),
    ]
    fp = compute_fingerprint(stats, CFG_3D)
    assert fp["median_spacing"] == pytest.approx([0.7, 0.7, 2.0])
    assert fp["median_shape"] == [20.0, 20.0, 7.0]
    assert fp["intensity_percentiles"] == [{"0.5": 0.0, "50.0": 125.0, "99.5": 200.0}]
    assert fingerprint_window(fp) == (0.0, 200.0)
    assert fingerprint_spacing(fp) == pytest.approx([0.7, 0.7, 2.0])


def test_3d_spacing_is_reordered_to_ras_axes():
    # Voxel axis 0 runs along z (3 mm), axis 2 along x (0.5 mm): after Orientationd("RAS") the
    # 3 mm axis is the last one.
    affine = np.array([[0, 0, 0.5, 0], [0, 0.8, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1.0]])
    fp = compute_fingerprint([_stats("a", [1, 1, 1], spacing=(3.0, 0.8, 0.5), affine=affine)], CFG_3D)
    assert fp["spacings"] == [[0.5, 0.8, 3.0]]


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="zero cases"):
        compute_fingerprint([], CFG_3D)
    with pytest.raises(ValueError, match="expected 3"):
        compute_fingerprint([_stats("a", [1, 2])], CFG_3D)


def test_save_load_roundtrip_and_missing(tmp_path):
    fp = compute_fingerprint([_stats("a", [5, 4, 1])], CFG_3D)
    path = save_fingerprint(fp, tmp_path)
    assert path == tmp_path / "fingerprint.json"
    assert load_fingerprint(tmp_path) == json.loads(json.dumps(fp)) == load_fingerprint(path)
    assert load_fingerprint(tmp_path / "elsewhere") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_fingerprint(tmp_path / "bad.json")


def test_window_absent_or_degenerate_gives_none():
    assert fingerprint_window(None) is None
    assert fingerprint_window({"intensity_percentiles": [{"0.5": 5.0, "99.5": 5.0}]}) is None
    assert fingerprint_spacing({"median_spacing": []}) is None
