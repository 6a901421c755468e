"""BCCD boxes -> weak semantic masks: hand-built smears with known pixels, and real BCCD files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from dataset_copies import copy_files, no_leftovers, shared_dataset
from PIL import Image

from medseg_dfl.datasets import fetch_dataset
from medseg_dfl.datasets.bccd import parse_annotation
from medseg_dfl.datasets.bccd_masks import (
    BACKGROUND,
    PLATELET,
    RBC,
    WBC,
    MaskParams,
    mask_from_boxes,
    shrink_pair,
    stain_score,
)

GREY, SALMON, PALE = (215, 215, 215), (200, 150, 150), (212, 205, 205)
PURPLE, NUCLEUS, CYTOPLASM = (150, 140, 205), (110, 105, 195), (205, 205, 212)


def _disc(image: np.ndarray, centre: tuple[int, int], radius: float, colour: tuple[int, int, int]) -> None:
    yy, xx = np.ogrid[: image.shape[0], : image.shape[1]]
    image[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2] = colour


def _smear() -> tuple[np.ndarray, list]:
    """180 x 200 px: a red cell (pale centre, a stained dot), a boxed platelet, a white cell, an
    unboxed platelet, and an empty platelet box; boxes (class, xmin, ymin, xmax, ymax)."""
    image = np.zeros((180, 200, 3), dtype=np.uint8)
    image[:] = GREY
    _disc(image, (50, 50), 20, SALMON)
    _disc(image, (50, 50), 7, PALE)
    _disc(image, (40, 60), 2, PURPLE)  # a stained dot in a red cell
    _disc(image, (50, 130), 5, PURPLE)  # the boxed platelet
    _disc(image, (130, 60), 25, CYTOPLASM)
    _disc(image, (130, 60), 12, NUCLEUS)
    _disc(image, (130, 160), 5, PURPLE)  # a platelet nobody boxed
    boxes = [("rbc", 28, 28, 72, 72), ("platelet", 118, 38, 142, 62), ("wbc", 34, 104, 86, 156),
             ("platelet", 170, 10, 190, 30)]
    return image, boxes


def test_stain_score_is_blue_excess():
    rgb = np.array([[PURPLE, SALMON, GREY]], dtype=np.uint8)
    assert stain_score(rgb).tolist() == [[60.0, -25.0, 0.0]]
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) RGB image, got shape \(4, 4\)"):
        stain_score(np.zeros((4, 4)))


def test_hand_built_smear_gets_the_expected_classes():
    image, boxes = _smear()
    mask = mask_from_boxes(image, boxes, cell_diameter=40)
    assert mask[5, 5] == BACKGROUND and mask[50, 95] == BACKGROUND
    assert mask[50, 50] == RBC  # the pale centre is filled
    assert mask[50, 35] == RBC and mask[40, 60] == RBC  # the stained dot stays part of its red cell
    assert mask[50, 130] == PLATELET and mask[42, 122] == BACKGROUND  # the blob, not its whole box
    assert (mask == PLATELET)[44:57, 124:137].mean() > 0.5
    assert mask[130, 60] == WBC and mask[130, 40] == WBC  # nucleus and cytoplasm
    assert mask[130, 160] == PLATELET  # unboxed, isolated, platelet-sized and stained
    assert mask[20, 180] == PLATELET and mask[12, 172] == BACKGROUND  # empty box: a central disc
    assert set(np.unique(mask)) == {BACKGROUND, RBC, WBC, PLATELET}


def test_unboxed_stain_and_class_checks():
    image, boxes = _smear()
    mask = mask_from_boxes(image, boxes, cell_diameter=40, params=MaskParams(unboxed_platelets=False))
    assert mask[130, 160] == BACKGROUND
    with pytest.raises(ValueError, match=r"unknown box class\(es\) \['neutrophil'\]"):
        mask_from_boxes(image, [("neutrophil", 1, 1, 5, 5)], cell_diameter=40)


def test_white_cell_box_cut_by_the_border_is_completed_as_a_round_cell():
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    image[:] = GREY
    _disc(image, (95, 60), 30, CYTOPLASM)
    _disc(image, (95, 60), 14, NUCLEUS)
    mask = mask_from_boxes(image, [("wbc", 30, 65, 90, 100)], cell_diameter=40)
    # The box is 60 x 35 px (cut at the bottom); its inscribed ellipse would stop 17 px above the border.
    assert mask[99, 60] == WBC and mask[75, 60] == WBC and mask[90, 35] == WBC
    assert mask[60, 60] == BACKGROUND


def test_shrink_keeps_the_majority_class():
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:4, :4] = PLATELET
    mask[4:, 4:] = RBC
    mask[0, 0] = WBC
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, 4:] = 200
    small_rgb, small_mask = shrink_pair(rgb, mask, 0.5)
    assert small_mask.tolist() == [[3, 3, 0, 0], [3, 3, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert small_rgb.shape == (4, 4, 3) and small_rgb[0, :, 0].tolist() == [0, 0, 200, 200]
    with pytest.raises(ValueError, match="shrink factor must be in"):
        shrink_pair(rgb, mask, 1.5)


def test_real_bccd_image_platelet_and_white_cell_boxes():
    src = shared_dataset("BCCD")
    name = "BloodImage_00030"  # 1 WBC, 3 platelet boxes
    rgb = np.asarray(Image.open(src / "JPEGImages" / f"{name}.jpg").convert("RGB"))
    boxes = [b for b in parse_annotation(src / "Annotations" / f"{name}.xml") if b[3] > b[1] and b[4] > b[2]]
    mask = mask_from_boxes(rgb, boxes)
    platelets = [b for b in boxes if b[0] == "platelet"]
    assert len(platelets) == 3
    for _, x0, y0, x1, y1 in platelets:
        assert (mask[y0:y1, x0:x1] == PLATELET).sum() >= 100  # a platelet here is ~20 px across
    (_, x0, y0, x1, y1), = [b for b in boxes if b[0] == "wbc"]
    nucleus = stain_score(rgb)[y0:y1, x0:x1] > 60
    assert nucleus.sum() > 1000
    assert (mask[y0:y1, x0:x1][nucleus] == WBC).mean() > 0.99
    assert (mask == RBC).mean() > 0.2  # most of the field is red cells


def _bccd_copy(tmp_path):
    src = shared_dataset("BCCD")
    names = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00338"]
    repo = tmp_path / "BCCD"
    copy_files(src / "JPEGImages", repo / "JPEGImages", [f"{n}.jpg" for n in names])
    copy_files(src / "Annotations", repo / "Annotations", [f"{n}.xml" for n in names])
    copy_files(src / "ImageSets" / "Main", repo / "ImageSets" / "Main", ["train.txt", "val.txt"])
    shutil.copyfile(src / "LICENSE", repo / "LICENSE")
    return repo


def test_fetch_bccd_masks_writes_shrunk_pairs_and_the_split_lists(tmp_path):
    out = fetch_dataset("bccd-masks", tmp_path / "masks", source=_bccd_copy(tmp_path))
    meta = json.loads((out / "dataset.json").read_text())
    assert [e["image"] for e in meta["training"]] == ["images/BloodImage_00001.png"]
    assert [e["label"] for e in meta["validation"]] == ["labels/BloodImage_00000.png", "labels/BloodImage_00338.png"]
    label = np.asarray(Image.open(out / "labels" / "BloodImage_00001.png"))
    image = Image.open(out / "images" / "BloodImage_00001.png")
    # BCCD's red cells are ~75-100 px across; shrunk to 25 px the 640 x 480 field is ~160-215 px wide.
    assert 150 <= image.size[0] <= 230 and image.size == (label.shape[1], label.shape[0])
    assert set(np.unique(label)) <= {0, 1, 2, 3} and (label == WBC).any() and (label == RBC).mean() > 0.2
    assert "weak" in meta["conversion"]["labels_are"] and "weak labels" in (out / "README.md").read_text()
    assert "MIT License" in (out / "LICENSE").read_text()


def test_fetch_bccd_masks_without_a_training_list_writes_nothing(tmp_path):
    repo = _bccd_copy(tmp_path)
    (repo / "ImageSets" / "Main" / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.txt: missing, or none of its images converted"):
        fetch_dataset("bccd-masks", tmp_path / "masks", source=repo)
    assert no_leftovers(tmp_path, "masks")
