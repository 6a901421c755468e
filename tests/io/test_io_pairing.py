"""Pairing rules: images/+labels/, Cellpose *_masks, Decathlon dataset.json; splits; find_images."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from medseg_dfl.io import CasePair, discover_pairs, find_images, split_pairs
from medseg_dfl.io.names import file_stem

PIXELS = np.zeros((4, 4), dtype=np.uint8)


def _touch_images(files, names):
    for name in names:
        files.pil(name, PIXELS) if name.endswith(".png") else files.text(name, b"x")


@pytest.mark.parametrize(("name", "stem"), [("a.nii.gz", "a"), ("a.b.nii.gz", "a.b"), ("x_masks.png", "x_masks"),
                                            ("case.01.mha", "case.01"), ("dicom_series", "dicom_series")])
def test_file_stem(name, stem):
    assert file_stem(f"/d/{name}") == stem


def test_images_and_labels_folders_with_label_suffixes(files, caplog):
    _touch_images(files, ["images/a.png", "images/b.nii.gz", "images/c.png", "images/notes.txt", "images/.DS_Store",
                          "labels/a.png", "labels/b_seg.nii.gz", "labels/c_mask.png", "labels/readme.json"])
    with caplog.at_level(logging.DEBUG, logger="medseg_dfl.io.pairing"):
        pairs = discover_pairs(files.root)
    assert pairs == [
        CasePair("a", files.path("images/a.png"), files.path("labels/a.png")),
        CasePair("b", files.path("images/b.nii.gz"), files.path("labels/b_seg.nii.gz")),
        CasePair("c", files.path("images/c.png"), files.path("labels/c_mask.png")),
    ]
    assert "notes.txt" in caplog.text and "readme.json" in caplog.text


@pytest.mark.parametrize("suffix", ["_label", "_labels", "_masks"])
def test_other_label_suffixes(files, suffix):
    _touch_images(files, ["images/x.png", f"labels/x{suffix}.png"])
    assert discover_pairs(files.root)[0].label == files.path(f"labels/x{suffix}.png")


def test_unpaired_files_are_listed_together(files):
    _touch_images(files, ["images/a.png", "images/b.png", "images/c.png", "labels/a.png", "labels/z.png"])
    with pytest.raises(ValueError, match="unpaired") as info:
        discover_pairs(files.root)
    message = str(info.value)
    assert "images/b.png" in message and "images/c.png" in message and "labels/z.png" in message
    assert "labels/a.png" not in message


@pytest.mark.parametrize(
    ("names", "listed"),
    [(["images/x.png", "images/x.tif", "labels/x.png"], ["x.png", "x.tif"]),
     (["images/x.png", "labels/x.png", "labels/x_seg.png"], ["x.png", "x_seg.png"]),
     (["c.png", "c.tif", "c_masks.png"], ["c.png", "c.tif"])],
)
def test_duplicate_stems_are_an_error(files, names, listed):
    _touch_images(files, names)
    with pytest.raises(ValueError, match="several") as info:
        discover_pairs(files.root)
    assert all(name in str(info.value) for name in listed)


def test_missing_labels_folder(files):
    _touch_images(files, ["images/a.png"])
    with pytest.raises(ValueError, match="no labels/ folder"):
        discover_pairs(files.root)


def test_cellpose_layout(files):
    _touch_images(files, ["img1.png", "img1_masks.png", "img2.tif", "img2_masks.tif", "img2_seg.npy", "log.txt"])
    pairs = discover_pairs(files.root)
    assert [(p.case_id, p.image.name, p.label.name) for p in pairs] == [
        ("img1", "img1.png", "img1_masks.png"), ("img2", "img2.tif", "img2_masks.tif")]


def test_cellpose_unpaired(files):
    _touch_images(files, ["a.png", "a_masks.png", "b.png", "q_masks.png"])
    with pytest.raises(ValueError, match=r"b\.png.*q_masks\.png"):
        discover_pairs(files.root)


def _decathlon(files, training, validation=(), test=()):
    files.path("dataset.json").write_text(json.dumps(
        {"labels": {"0": "background", "1": "organ"}, "training": list(training),
         "validation": list(validation), "test": list(test)}))


def test_decathlon_dataset_json_and_its_split(files):
    names = ["imagesTr/a.nii.gz", "labelsTr/a.nii.gz", "imagesTr/b.nii.gz", "labelsTr/b.nii.gz",
             "imagesTr/c.nii.gz", "labelsTr/c.nii.gz", "imagesTs/t.nii.gz"]
    _touch_images(files, names)
    entry = [{"image": f"./imagesTr/{s}.nii.gz", "label": f"./labelsTr/{s}.nii.gz"} for s in "abc"]
    _decathlon(files, entry[:2], entry[2:], ["imagesTs/t.nii.gz"])
    pairs = discover_pairs(files.root)
    assert [p.case_id for p in pairs] == ["a", "b", "c"]
    assert pairs[2].label == files.root / "./labelsTr/c.nii.gz"
    train, val = split_pairs(files.root, pairs, 0.5, seed=1)
    assert [p.case_id for p in train] == ["a", "b"] and [p.case_id for p in val] == ["c"]


def test_decathlon_missing_and_unlabelled_entries(files):
    _touch_images(files, ["i/a.png", "l/a.png", "i/b.png"])
    _decathlon(files, [{"image": "i/a.png", "label": "l/a.png"}, {"image": "i/b.png", "label": "l/b.png"},
                       {"image": "i/c.png", "label": "l/c.png"}])
    with pytest.raises(FileNotFoundError, match=r"l/b\.png, .*i/c\.png, .*l/c\.png"):
        discover_pairs(files.root)
    _decathlon(files, [{"image": "i/a.png", "label": "l/a.png"}, {"image": "i/b.png"}])
    with pytest.raises(ValueError, match=r"without a label: .*i/b\.png"):
        discover_pairs(files.root)
    files.path("dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="dataset.json: not a readable JSON"):
        discover_pairs(files.root)


def test_missing_root_and_empty_root(files):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_pairs(files.root / "nowhere")
    files.text("notes.txt")
    with pytest.raises(ValueError, match="no image/label pairs"):
        discover_pairs(files.root)


def _pairs(n):
    return [CasePair(f"case{i:02d}", f"/d/case{i:02d}.png", f"/d/case{i:02d}_masks.png") for i in range(n)]


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(10, 0.2, 2), (10, 0.0, 0), (2, 0.01, 1), (1, 0.5, 0),
                                                      (3, 0.9, 2), (7, 0.5, 4)])
def test_seeded_split_sizes(tmp_path, n, fraction, n_val):
    train, val = split_pairs(tmp_path, _pairs(n), fraction, seed=3)
    assert len(val) == n_val and len(train) == n - n_val
    assert {p.case_id for p in train}.isdisjoint({p.case_id for p in val})


def test_seeded_split_is_deterministic_and_order_free(tmp_path):
    pairs = _pairs(20)
    first = split_pairs(tmp_path, pairs, 0.25, seed=7)
    again = split_pairs(tmp_path, list(reversed(pairs)), 0.25, seed=7)
    other = split_pairs(tmp_path, pairs, 0.25, seed=8)
    assert {p.case_id for p in first[1]} == {p.case_id for p in again[1]}
    assert {p.case_id for p in first[1]} != {p.case_id for p in other[1]}
    with pytest.raises(ValueError, match="val_fraction"):
        split_pairs(tmp_path, pairs, 1.0, seed=0)


def test_find_images(files):
    _touch_images(files, ["in/b.png", "in/a.nii.gz", "in/.hidden.png", "in/notes.txt", "in/sub/c.mha",
                          "in/.cache/d.png"])
    assert find_images(files.path("in")) == [files.path("in/a.nii.gz"), files.path("in/b.png")]
    assert find_images(files.path("in"), recursive=True) == [
        files.path("in/a.nii.gz"), files.path("in/b.png"), files.path("in/sub/c.mha")]
    assert find_images(files.path("in/b.png")) == [files.path("in/b.png")]
    with pytest.raises(FileNotFoundError, match="missing"):
        find_images(files.path("missing"))
    with pytest.raises(ValueError, match="not a supported image"):
        find_images(files.path("in/notes.txt"))
    empty = files.root / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        find_images(empty)
