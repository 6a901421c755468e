"""`fetch_dataset("hippocampus")`: a Task04 folder or tar (or MONAI's download) -> Decathlon layout."""

from __future__ import annotations

import hashlib
import json
import tarfile

import pytest
from dataset_copies import copy_files, no_leftovers, shared_dataset
from monai.apps.datasets import DecathlonDataset

from medseg_dfl.datasets import FetchError, fetch_dataset
from medseg_dfl.io.pairing import discover_pairs

CASES = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_007", "hippocampus_008"]
ABSENT = ["hippocampus_900", "hippocampus_901"]  # listed in dataset.json, files not present


def _task_folder(tmp_path):
    src = shared_dataset("Task04_Hippocampus")
    task = tmp_path / "src" / "Task04_Hippocampus"
    for sub in ("imagesTr", "labelsTr"):
        copy_files(src / sub, task / sub, [f"{c}.nii.gz" for c in CASES])
    (task / "imagesTr" / "._hippocampus_001.nii.gz").write_bytes(b"macOS resource fork")  # as in the official tar
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in CASES + ABSENT]
    meta["test"] = []
    (task / "dataset.json").write_text(json.dumps(meta))
    return task


def _check_output(out, task):
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["conversion"]["cases"] == 5 and meta["conversion"]["listed_but_missing"] == 2
    assert (meta["numTraining"], meta["numValidation"]) == (4, 1)
    assert meta["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert sorted(p.case_id for p in discover_pairs(out)) == CASES
    for case in CASES:  # copied byte for byte
        assert (out / "imagesTr" / f"{case}.nii.gz").read_bytes() == (task / "imagesTr" / f"{case}.nii.gz").read_bytes()
    assert not (out / "imagesTr" / "._hippocampus_001.nii.gz").exists()
    assert "CC-BY-SA 4.0" in (out / "LICENSE").read_text() and "Decathlon" in (out / "README.md").read_text()


def test_fetch_from_folder_keeps_present_cases(tmp_path):
    task = _task_folder(tmp_path)
    before = sorted(p.name for p in task.rglob("*"))
    out = fetch_dataset("hippocampus", tmp_path / "hippo", source=task.parent)  # the folder above also works
    _check_output(out, task)
    assert sorted(p.name for p in task.rglob("*")) == before  # the source is untouched


def _tar(task, path):
    with tarfile.open(path, "w") as tf:
        tf.add(task, arcname=task.name)
    return path


def test_fetch_from_tar(tmp_path):
    task = _task_folder(tmp_path)
    out = fetch_dataset("hippocampus", tmp_path / "hippo", source=_tar(task, tmp_path / "Task04_Hippocampus.tar"))
    _check_output(out, task)


def test_truncated_tar_leaves_no_output(tmp_path):
    task = _task_folder(tmp_path)
    archive = _tar(task, tmp_path / "Task04_Hippocampus.tar")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(FetchError, match="truncated or corrupt archive"):
        fetch_dataset("hippocampus", tmp_path / "hippo", source=archive)
    assert no_leftovers(tmp_path, "hippo")


def test_download_checks_monai_md5(tmp_path, monkeypatch):
    # MONAI's downloader on a file:// URL: the same code path as the official archive, offline.
    task = _task_folder(tmp_path)
    archive = _tar(task, tmp_path / "Task04_Hippocampus.tar")
    monkeypatch.setitem(DecathlonDataset.resource, "Task04_Hippocampus", archive.as_uri())
    monkeypatch.setitem(DecathlonDataset.md5, "Task04_Hippocampus", "0" * 32)
    with pytest.raises(FetchError, match="download of file://.* failed"):
        fetch_dataset("hippocampus", tmp_path / "hippo")
    assert no_leftovers(tmp_path, "hippo")
    monkeypatch.setitem(DecathlonDataset.md5, "Task04_Hippocampus", hashlib.md5(archive.read_bytes()).hexdigest())
    _check_output(fetch_dataset("hippocampus", tmp_path / "hippo"), task)


def test_no_listed_case_present_is_an_error(tmp_path):
    task = _task_folder(tmp_path)
    for path in (task / "labelsTr").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match="none of the 7 listed training pairs"):
        fetch_dataset("hippocampus", tmp_path / "hippo", source=task)
    assert no_leftovers(tmp_path, "hippo")
