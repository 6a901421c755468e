"""Datasets by cache mode, the preprocessed-root convention, seeded loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from PIL import Image

from medseg_dfl.config import config_from_dict
from medseg_dfl.data.datasets import build_datasets, build_loaders, is_preprocessed, warm_disk_cache


def _write_smears(root, n=5, size=24):
    rng = np.random.default_rng(3)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        label[2:10, 3:12] = 1
        label[14 + i % 3 : 17 + i % 3, 15:18] = 2
        label[20, 5 + i] = 3
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "labels" / f"s{i}.png")
    return root


def _cfg(root, **data):
    return config_from_dict(
        {
            "data": {"root": str(root), **data},
            "transforms": {"patch_size": [16, 16], "num_samples": 2},
            "train": {"batch_size": 2},
            "experiment": {"seed": 7},
        }
    )


@pytest.mark.parametrize(("cache", "kind"), [("none", Dataset), ("memory", CacheDataset)])
def test_cache_modes_and_split(tmp_path, cache, kind):
    train, val = build_datasets(_cfg(_write_smears(tmp_path), cache=cache, val_fraction=0.4))
    assert type(train) is kind and type(val) is kind
    assert (len(train), len(val)) == (3, 2)
    assert {d["case_id"] for d in train.data} | {d["case_id"] for d in val.data} == {f"s{i}" for i in range(5)}
    sample = val[0]
    assert sample["image"].shape == (3, 24, 24) and sample["label"].dtype == torch.long


def test_dataset_json_validation_list_is_the_split(tmp_path):
    root = _write_smears(tmp_path)
    entries = [{"image": f"images/s{i}.png", "label": f"labels/s{i}.png"} for i in range(5)]
    (root / "dataset.json").write_text(json.dumps({"training": entries[:4], "validation": entries[4:]}))
    train, val = build_datasets(_cfg(root, cache="none"))
    assert [d["case_id"] for d in val.data] == ["s4"] and len(train) == 4


def test_disk_cache_needs_a_cache_dir_outside_raw_data(tmp_path):
    root = _write_smears(tmp_path / "raw")
    with pytest.raises(ValueError, match="cache_dir"):
        build_datasets(_cfg(root, cache="disk"))
    assert sorted(p.name for p in root.iterdir()) == ["images", "labels"]
    train, _ = build_datasets(_cfg(root, cache="disk", cache_dir=str(tmp_path / "c")))
    assert isinstance(train, PersistentDataset)


def test_preprocessed_root_uses_its_cache_and_fingerprint(tmp_path):
    raw = _write_smears(tmp_path / "raw")
    out = tmp_path / "pre"
    out.mkdir()
    entries = [{"image": str(raw / f"images/s{i}.png"), "label": str(raw / f"labels/s{i}.png")} for i in range(5)]
    (out / "dataset.json").write_text(json.dumps({"source": str(raw), "training": entries[:4], "validation": entries[4:]}))
    (out / "fingerprint.json").write_text(json.dumps({"class_frequencies": [0.7, 0.2, 0.05, 0.05]}))
    assert is_preprocessed(out) and not is_preprocessed(raw)
    cfg = _cfg(out, cache="disk")
    assert warm_disk_cache(cfg) == 5
    cached = sorted(p.name for p in (out / "cache").iterdir())
    assert len(cached) == 5
    train, val = build_datasets(cfg)
    assert val[0]["image"].shape == (3, 24, 24) and len(train[0]) == 2
    assert sorted(p.name for p in (out / "cache").iterdir()) == cached  # read, not recomputed


def _first_batch(cfg):
    loader, _ = build_loaders(cfg, *build_datasets(cfg))
    return next(iter(loader))


def test_loaders_same_seed_same_batches(tmp_path):
    cfg = _cfg(_write_smears(tmp_path), cache="none")
    first, again = _first_batch(cfg), _first_batch(cfg)
    assert first["image"].shape == (4, 3, 16, 16)  # batch_size 2 x num_samples 2
    assert first["label"].shape == (4, 1, 16, 16)
    assert torch.equal(first["image"], again["image"]) and first["case_id"] == again["case_id"]
    other = _first_batch(config_from_dict({**_cfg_dict(tmp_path), "experiment": {"seed": 8}}))
    assert not torch.equal(first["image"], other["image"])


def _cfg_dict(root):
    return {"data": {"root": str(root), "cache": "none"}, "transforms": {"patch_size": [16, 16], "num_samples": 2},
            "train": {"batch_size": 2}}


def test_val_loader_is_one_whole_image_per_batch(tmp_path):
    cfg = _cfg(_write_smears(tmp_path), cache="none")
    _, val_loader = build_loaders(cfg, *build_datasets(cfg))
    batches = list(val_loader)
    assert len(batches) == 1 and batches[0]["image"].shape == (1, 3, 24, 24)
