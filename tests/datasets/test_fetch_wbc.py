"""`fetch_dataset("wbc", --from)`: segmentation_WBC -> images/ + labels/ (0/1/2) + dataset.json."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from dataset_copies import copy_files, no_leftovers, shared_dataset
from PIL import Image

from medseg_dfl.datasets import FetchError, fetch_dataset
from medseg_dfl.datasets.wbc import mask_to_classes
from medseg_dfl.io.pairing import discover_pairs, split_pairs

REAL_CASES = ["001", "002", "003", "004"]


def test_mask_values_go_to_the_nearest_class():
    # 0/128/255 are exact; strays go to the nearest level, 64 (a tie) to the lower one.
    mask = np.array([[0, 128, 255, 10, 63, 64], [65, 100, 191, 192, 250, 255]], dtype=np.uint8)
    classes = mask_to_classes(mask)
    np.testing.assert_array_equal(classes, [[0, 1, 2, 0, 0, 0], [1, 1, 1, 2, 2, 2]])
    assert classes.dtype == np.uint8
    assert np.bincount(classes.ravel()).tolist() == [4, 4, 4]


def _synthetic_pair(folder, stem, mask):
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.dstack([np.full(mask.shape, v, np.uint8) for v in (200, 150, 100)])
    Image.fromarray(rgb).save(folder / f"{stem}.bmp")
    Image.fromarray(mask).save(folder / f"{stem}.png")


def _repo(tmp_path, real=True):
    repo = tmp_path / "segmentation_WBC"
    if real:
        src = shared_dataset("segmentation_WBC")
        copy_files(src / "Dataset 1", repo / "Dataset 1", [f"{c}.{ext}" for c in REAL_CASES for ext in ("bmp", "png")])
        shutil.copyfile(src / "LICENSE", repo / "LICENSE")
    stray = np.zeros((8, 10), np.uint8)
    stray[:2] = 128
    stray[2:4] = 255
    stray[4, :5] = 100  # -> cytoplasm
    stray[5, :3] = 200  # -> nucleus
    _synthetic_pair(repo / "Dataset 1", "900", stray)
    for stem in ("001", "002"):
        _synthetic_pair(repo / "Dataset 2", stem, np.full((6, 6), 255, np.uint8))
    return repo


def test_fetch_from_repo_folder(tmp_path):
    repo = _repo(tmp_path)
    out = fetch_dataset("wbc", tmp_path / "wbc", source=repo)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "cytoplasm", "2": "nucleus"}
    assert (meta["numTraining"], meta["numValidation"], meta["numTest"]) == (4, 1, 2)
    assert meta["conversion"]["masks_with_stray_values"] == 1
    assert meta["conversion"]["stray_pixels_mapped_to_nearest"] == 8
    stray = np.asarray(Image.open(out / "labels" / "d1_900.png"))
    assert np.bincount(stray.ravel(), minlength=3).tolist() == [80 - 20 - 20 - 8, 25, 23]
    for case in REAL_CASES:  # real masks are exactly 0/128/255: counts carry over one to one
        source = np.asarray(Image.open(repo / "Dataset 1" / f"{case}.png"))
        label = np.asarray(Image.open(out / "labels" / f"d1_{case}.png"))
        assert [int((source == v).sum()) for v in (0, 128, 255)] == np.bincount(label.ravel(), minlength=3).tolist()
        image = Image.open(out / "images" / f"d1_{case}.png")
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), np.asarray(Image.open(repo / "Dataset 1" / f"{case}.bmp")))
    pairs = discover_pairs(out)  # the project's own pairing reads it; Dataset 2 is the test list only
    assert sorted(p.case_id for p in pairs) == ["d1_001", "d1_002", "d1_003", "d1_004", "d1_900"]
    train, val = split_pairs(out, pairs, val_fraction=0.5, seed=1)
    assert len(train) == 4 and [p.case_id for p in val] == [e["image"][7:-4] for e in meta["validation"]]
    assert "GNU GENERAL PUBLIC LICENSE" in (out / "LICENSE").read_text()
    assert "Micron 107" in (out / "README.md").read_text()


def test_validation_list_is_deterministic(tmp_path):
    repo = _repo(tmp_path, real=False)
    for stem in ("901", "902", "903", "904", "905", "906", "907", "908", "909"):
        _synthetic_pair(repo / "Dataset 1", stem, np.zeros((4, 4), np.uint8))
    first = json.loads((fetch_dataset("wbc", tmp_path / "a", source=repo) / "dataset.json").read_text())
    second = json.loads((fetch_dataset("wbc", tmp_path / "b", source=repo) / "dataset.json").read_text())
    assert first["validation"] == second["validation"] and len(first["validation"]) == 2


def test_missing_folder_leaves_no_output(tmp_path):
    (tmp_path / "empty_repo").mkdir()
    with pytest.raises(FileNotFoundError, match="Dataset 1.*Dataset 2"):
        fetch_dataset("wbc", tmp_path / "wbc", source=tmp_path / "empty_repo")
    assert no_leftovers(tmp_path, "wbc")


def test_bad_pair_midway_leaves_no_output_and_existing_output_is_kept(tmp_path):
    repo = _repo(tmp_path, real=False)
    out = fetch_dataset("wbc", tmp_path / "wbc", source=repo)
    before = (out / "dataset.json").read_bytes()
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(repo / "Dataset 2" / "002.png")  # size mismatch
    with pytest.raises(ValueError, match="002.png: mask is 3x3"):
        fetch_dataset("wbc", tmp_path / "wbc", source=repo, overwrite=True)
    assert (out / "dataset.json").read_bytes() == before and not list(tmp_path.glob(".wbc.*"))
    with pytest.raises(FileExistsError, match="not empty"):
        fetch_dataset("wbc", out, source=repo)


def test_zip_of_the_repository(tmp_path):
    repo = _repo(tmp_path, real=False)
    archive = shutil.make_archive(str(tmp_path / "segmentation_WBC-master"), "zip", tmp_path, repo.name)
    out = fetch_dataset("wbc", tmp_path / "wbc", source=archive)
    assert json.loads((out / "dataset.json").read_text())["conversion"]["cases"] == {"d1": 1, "d2": 2}


def test_download_of_the_repository_zip(tmp_path, monkeypatch):
    # The GitHub archive has one top folder (segmentation_WBC-master/); served here from a file:// URL.
    import medseg_dfl.datasets.wbc as wbc

    repo = _repo(tmp_path, real=False)
    shutil.make_archive(str(tmp_path / "master"), "zip", tmp_path, repo.name)
    monkeypatch.setattr(wbc, "ARCHIVE_URL", (tmp_path / "master.zip").as_uri())
    out = fetch_dataset("wbc", tmp_path / "wbc")
    assert json.loads((out / "dataset.json").read_text())["numTest"] == 2
    monkeypatch.setattr(wbc, "ARCHIVE_URL", (tmp_path / "absent.zip").as_uri())
    with pytest.raises(FetchError, match="download of file://.*absent.zip failed"):
        fetch_dataset("wbc", tmp_path / "wbc2")
    assert no_leftovers(tmp_path, "wbc2")


def test_fetch_from_a_copy_with_only_dataset_2(tmp_path):
    # The other lab's images alone (no Dataset 1/): they become the training/validation set.
    src = shared_dataset("segmentation_WBC") / "Dataset 2"
    cases = sorted(p.stem for p in src.glob("*.bmp"))[:5]
    repo = tmp_path / "wbc_dataset2_only"
    copy_files(src, repo / "Dataset 2", [f"{c}.{ext}" for c in cases for ext in ("bmp", "png")])
    out = fetch_dataset("wbc", tmp_path / "wbc", source=repo)
    meta = json.loads((out / "dataset.json").read_text())
    assert (meta["numTraining"], meta["numValidation"], meta["numTest"]) == (4, 1, 0)
    assert meta["conversion"]["cases"] == {"d2": 5} and meta["test"] == []
    pairs = discover_pairs(out)
    assert sorted(p.case_id for p in pairs) == [f"d2_{c}" for c in cases]
    for case in cases[:2]:  # 0/128/255 -> 0/1/2, pixel for pixel
        source = np.asarray(Image.open(src / f"{case}.png").convert("L"))
        label = np.asarray(Image.open(out / "labels" / f"d2_{case}.png"))
        np.testing.assert_array_equal(label, mask_to_classes(source))
        assert set(np.unique(label)) <= {0, 1, 2} and (label > 0).any()
    assert "Dataset 2 (Dataset 1 not in the source): 5 cases" in (out / "README.md").read_text()
