"""`fetch_dataset("bccd", --from)`: VOC boxes -> boxes.csv + counts.csv, images and splits kept."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from dataset_copies import copy_files, no_leftovers, shared_dataset

from medseg_dfl.datasets import fetch_dataset
from medseg_dfl.datasets.bccd import parse_annotation

IMAGES = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00338"]


def _repo(tmp_path):
    """The GitHub repository layout: LICENSE at the root, the data in BCCD/."""
    src = shared_dataset("BCCD")
    repo = tmp_path / "BCCD_Dataset"
    copy_files(src / "JPEGImages", repo / "BCCD" / "JPEGImages", [f"{i}.jpg" for i in IMAGES])
    copy_files(src / "Annotations", repo / "BCCD" / "Annotations", [f"{i}.xml" for i in IMAGES])
    copy_files(src / "ImageSets" / "Main", repo / "BCCD" / "ImageSets" / "Main", ["train.txt", "val.txt"])
    shutil.copyfile(src / "LICENSE", repo / "LICENSE")
    return repo


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_counts_and_boxes_from_the_xml(tmp_path):
    out = fetch_dataset("bccd", tmp_path / "bccd", source=_repo(tmp_path))
    counts = {r["image"]: r for r in _rows(out / "counts.csv")}
    assert (out / "counts.csv").read_text().splitlines()[0] == "image,rbc,wbc,platelet"
    # BloodImage_00000.xml: 19 RBC, 1 WBC, 0 Platelets objects.
    assert counts["BloodImage_00000.jpg"] == {"image": "BloodImage_00000.jpg", "rbc": "19", "wbc": "1", "platelet": "0"}
    # BloodImage_00338.xml: 13 RBC boxes, one of them zero-area (504,337,504,337), which is left out.
    assert counts["BloodImage_00338.jpg"]["rbc"] == "12"
    boxes = _rows(out / "boxes.csv")
    assert (out / "boxes.csv").read_text().splitlines()[:2] == [
        "image,class,xmin,ymin,xmax,ymax", "BloodImage_00000.jpg,wbc,260,177,491,376"]
    assert {b["class"] for b in boxes} <= {"rbc", "wbc", "platelet"}
    assert len(boxes) == sum(int(r[c]) for r in counts.values() for c in ("rbc", "wbc", "platelet"))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["conversion"]["zero_area_boxes_dropped"] == 1
    assert meta["conversion"]["splits"] == {"train": 1, "val": 2}
    assert (out / "splits" / "val.txt").read_text() == "BloodImage_00000\nBloodImage_00338\n"
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i}.jpg" for i in IMAGES]
    assert "MIT License" in (out / "LICENSE").read_text()


def test_parse_annotation_rejects_unknown_class(tmp_path):
    xml = tmp_path / "x.xml"
    xml.write_text("<annotation><object><name>Neutrophil</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                   "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(ValueError, match="unknown class 'Neutrophil'"):
        parse_annotation(xml)


def test_missing_image_leaves_no_output(tmp_path):
    repo = _repo(tmp_path)
    (repo / "BCCD" / "JPEGImages" / "BloodImage_00338.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="BloodImage_00338.jpg is missing"):
        fetch_dataset("bccd", tmp_path / "bccd", source=repo)
    assert no_leftovers(tmp_path, "bccd")
