"""preprocess_dataset: fingerprint vs a direct count, bad files, re-runs, INPUT_DIR untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg_dfl.config import config_from_dict, load_config
from medseg_dfl.data.datasets import build_datasets
from medseg_dfl.data.preprocess import PreprocessError, config_from_data, preprocess_dataset

SAMPLE_VOLUMES = Path(__file__).resolve().parents[2] / "sample_data" / "volumes"


def _write_smears(root, n=4, size=20):
    rng = np.random.default_rng(5)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        label[1:8, 2:9] = 1
        label[12:15, 12 : 13 + i] = 2
        label[18, 3] = 3
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "labels" / f"s{i}.png")
    return root


def _cfg():
    return config_from_dict({"transforms": {"patch_size": [16, 16]}, "data": {"val_fraction": 0.25}})


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.skipif(not SAMPLE_VOLUMES.is_dir(), reason="sample_data/volumes not present")
def test_sample_volumes_fingerprint_matches_direct_count(tmp_path):
    cfg = config_from_data(SAMPLE_VOLUMES)
    assert (cfg.data.spatial_dims, cfg.data.modality, cfg.data.class_names) == (3, "ct", ["background", "organ", "lesion"])
    result = preprocess_dataset(SAMPLE_VOLUMES, tmp_path / "out", cfg, progress=None)
    labels = sorted((SAMPLE_VOLUMES / "labels").glob("*.nii.gz"))
    counts = sum(np.bincount(np.asarray(nib.load(p).dataobj).astype(np.int64).ravel(), minlength=3) for p in labels)
    fp = json.loads(result.fingerprint_path.read_text())
    assert fp["class_counts"] == counts.tolist()
    np.testing.assert_allclose(fp["class_frequencies"], counts / counts.sum(), rtol=1e-12)
    assert fp["num_cases"] == len(labels) == result.n_ok
    assert fp["shapes"][0] == list(nib.load(labels[0]).shape)
    dataset = json.loads(result.dataset_json_path.read_text())
    assert len(dataset["training"]) + len(dataset["validation"]) == len(labels)
    assert all(Path(e["image"]).is_absolute() and Path(e["image"]).is_file() for e in dataset["training"])
    assert len(list(result.cache_dir.glob("*.pt"))) == len(labels)


def test_bad_pairs_are_all_listed_and_nothing_is_written(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(raw / "labels" / "s1.png")
    (raw / "images" / "s2.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "out"
    with pytest.raises(PreprocessError) as info:
        preprocess_dataset(raw, out, _cfg(), progress=None)
    bad = {path.name: reason for path, reason in info.value.bad}
    assert set(bad) == {"s1.png", "s2.png"} and "7" in bad["s1.png"]
    assert "2 of 4 pairs" in str(info.value)
    assert not out.exists()


def test_skip_bad_carries_on_without_them(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(raw / "labels" / "s1.png")
    result = preprocess_dataset(raw, tmp_path / "out", _cfg(), skip_bad=True, progress=None)
    assert result.n_ok == 3 and [p.name for p, _ in result.bad] == ["s1.png"]
    dataset = json.loads(result.dataset_json_path.read_text())
    listed = [Path(e["image"]).name for e in dataset["training"] + dataset["validation"]]
    assert sorted(listed) == ["s0.png", "s2.png", "s3.png"]
    assert dataset["labels"] == {"0": "background", "1": "rbc", "2": "wbc", "3": "platelet"}


def test_input_is_untouched_and_output_inside_input_is_refused(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    before = _snapshot(raw)
    with pytest.raises(ValueError, match="inside"):
        preprocess_dataset(raw, raw / "out", _cfg(), progress=None)
    with pytest.raises(ValueError, match="inside"):
        preprocess_dataset(raw, raw, _cfg(), progress=None)
    preprocess_dataset(raw, tmp_path / "out", _cfg(), progress=None)
    assert _snapshot(raw) == before


def test_rerun_reuses_validation_and_cache_and_notices_changes(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    out = tmp_path / "out"
    first = preprocess_dataset(raw, out, _cfg(), progress=None)
    cache = {p.name: p.stat().st_mtime_ns for p in first.cache_dir.iterdir()}
    again = preprocess_dataset(raw, out, _cfg(), progress=None)
    assert first.n_revalidated == 4 and again.n_revalidated == 0
    assert {p.name: p.stat().st_mtime_ns for p in again.cache_dir.iterdir()} == cache
    assert json.loads(again.fingerprint_path.read_text()) == first.fingerprint
    label = np.zeros((20, 20), np.uint8)
    label[5:15, 5:15] = 2
    Image.fromarray(label).save(raw / "labels" / "s0.png")
    changed = preprocess_dataset(raw, out, _cfg(), progress=None)
    assert changed.n_revalidated == 1
    assert changed.fingerprint["class_counts"] != first.fingerprint["class_counts"]
    assert len(set(p.name for p in changed.cache_dir.iterdir()) - set(cache)) == 1


def test_output_config_trains_from_the_warm_cache(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    result = preprocess_dataset(raw, tmp_path / "out", _cfg(), progress=None)
    cfg = load_config(tmp_path / "out" / "config.yaml")
    assert cfg.data.root == str(tmp_path / "out") and cfg.data.cache == "disk"
    cached = sorted(p.name for p in result.cache_dir.iterdir())
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (result.n_train, result.n_val) == (3, 1)
    assert train[0][0]["image"].shape == (3, 16, 16) and val[0]["label"].shape == (1, 20, 20)
    assert sorted(p.name for p in result.cache_dir.iterdir()) == cached


def test_infer_config_2d_uses_dataset_json_labels(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    cfg = config_from_data(raw)
    assert (cfg.data.spatial_dims, cfg.data.in_channels, cfg.data.modality) == (2, 3, "microscopy")
    entries = [{"image": f"images/s{i}.png", "label": f"labels/s{i}.png"} for i in range(4)]
    labels = {"1": "a", "0": "bg", "2": "b", "3": "c"}
    (raw / "dataset.json").write_text(json.dumps({"labels": labels, "training": entries}))
    assert config_from_data(raw).data.class_names == ["bg", "a", "b", "c"]
    labels["10"] = "d"
    (raw / "dataset.json").write_text(json.dumps({"labels": labels, "training": entries}))
    with pytest.raises(ValueError, match="labels"):
        config_from_data(raw)  # "10" without 4..9: not a contiguous class list
