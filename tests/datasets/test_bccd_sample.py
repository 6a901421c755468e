"""The shippable BCCD sample: the shipped copy (no shared data needed) and its writer (real BCCD files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from dataset_copies import copy_files, shared_dataset
from PIL import Image

from medseg_dfl.datasets.bccd_sample import sample_names, write_sample
from medseg_dfl.io.pairing import discover_pairs, split_pairs

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "sample_data" / "blood_smear_bccd"


def test_the_demo_config_trains_on_the_shipped_sample():
    from medseg_dfl.config import load_config

    cfg = load_config(REPO / "configs" / "blood_smear_2d.yaml")
    assert (REPO / cfg.data.root).resolve() == SHIPPED


def test_shipped_sample_pairs_licence_and_split():
    meta = json.loads((SHIPPED / "dataset.json").read_text())
    names = meta["sample"]["images"]
    assert 10 <= len(names) <= 30 and all(n.startswith("BloodImage_") for n in names)
    assert sorted(p.stem for p in (SHIPPED / "images").glob("*.png")) == sorted(names)
    assert sorted(p.stem for p in (SHIPPED / "labels").glob("*.png")) == sorted(names)
    licence = (SHIPPED / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2017 shenggan" in licence
    readme = (SHIPPED / "README.md").read_text()
    assert all(n in readme for n in names) and "weak labels" in readme and "train.txt" in readme
    assert "--count 30 --with blood_smear --boxed-platelets-only" in readme
    # The demo's data: the sample + the synthetic training smears; validation stays the 6 synthetic slides.
    train, val = split_pairs(SHIPPED, discover_pairs(SHIPPED), 0.2, 0)
    assert len(train) == len(names) + 24 and [p.case_id for p in val] == [
        e["image"].rsplit("/", 1)[1][:-4] for e in meta["validation"]]
    assert all(p.case_id.startswith("smear_") for p in val)
    sizes = set()
    for name in names:
        label = np.asarray(Image.open(SHIPPED / "labels" / f"{name}.png"))
        with Image.open(SHIPPED / "images" / f"{name}.png") as image:
            assert image.mode == "RGB" and image.size == (label.shape[1], label.shape[0])
            sizes.add(image.size)
        assert set(np.unique(label)) <= {0, 1, 2, 3} and (label == 1).mean() > 0.15
    assert sizes == {(186, 140)}  # 640 x 480 shrunk to 25 px red cells (from 85.9 px)
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < 1_500_000


def _bccd_copy(tmp_path: Path) -> Path:
    src = shared_dataset("BCCD")
    names = ["BloodImage_00001", "BloodImage_00022", "BloodImage_00042"]  # all in train.txt
    repo = tmp_path / "BCCD"
    copy_files(src / "JPEGImages", repo / "JPEGImages", [f"{n}.jpg" for n in names])
    copy_files(src / "Annotations", repo / "Annotations", [f"{n}.xml" for n in names])
    (repo / "ImageSets" / "Main").mkdir(parents=True)
    (repo / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names) + "\n")
    shutil.copyfile(src / "LICENSE", repo / "LICENSE")
    return repo


@pytest.mark.slow  # three conversions with their scale estimates: ~8 s CPU
def test_write_sample_takes_train_images_evenly_and_lists_another_set(tmp_path):
    repo = _bccd_copy(tmp_path)
    assert sample_names(repo, 2) == ["BloodImage_00001", "BloodImage_00042"]
    other = tmp_path / "synthetic"
    other.mkdir()
    (other / "dataset.json").write_text(json.dumps({
        "training": [{"image": "images/a.png", "label": "labels/a.png"}],
        "validation": [{"image": "images/b.png", "label": "labels/b.png"}]}))
    out = tmp_path / "sample"
    assert write_sample(repo, out, 2, also=other) == ["BloodImage_00001", "BloodImage_00042"]
    meta = json.loads((out / "dataset.json").read_text())
    assert [e["image"] for e in meta["training"]] == [
        "../synthetic/images/a.png", "images/BloodImage_00001.png", "images/BloodImage_00042.png"]
    assert meta["validation"] == [{"image": "../synthetic/images/b.png", "label": "../synthetic/labels/b.png"}]
    label = np.asarray(Image.open(out / "labels" / "BloodImage_00001.png"))
    assert 150 <= label.shape[1] <= 230 and set(np.unique(label)) <= {0, 1, 2, 3} and (label == 2).any()
    assert "Copyright (c) 2017 shenggan" in (out / "LICENSE").read_text()
    first = (out / "labels" / "BloodImage_00042.png").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a sample"):
        write_sample(repo, out, 1)
    assert write_sample(repo, out, 1, overwrite=True) == ["BloodImage_00001"]
    assert not (out / "labels" / "BloodImage_00042.png").exists()
    write_sample(repo, out, 2, also=other, overwrite=True)
    assert (out / "labels" / "BloodImage_00042.png").read_bytes() == first  # the same bytes again


def test_write_sample_refuses_bad_counts_and_missing_lists(tmp_path):
    repo = _bccd_copy(tmp_path)
    with pytest.raises(ValueError, match=r"count must be in 1\.\.3"):
        sample_names(repo, 4)
    (repo / "ImageSets" / "Main" / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train.txt: missing"):
        write_sample(repo, tmp_path / "out", 2)


def test_sample_data_bccd_needs_a_source_and_names_a_missing_one(tmp_path):
    from typer.testing import CliRunner

    from medseg_dfl.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["sample-data", str(tmp_path / "s"), "--kind", "bccd"])
    assert result.exit_code == 1 and "--from" in result.output and "Traceback" not in result.output
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["sample-data", str(tmp_path / "s"), "--kind", "bccd", "--from", str(missing)])
    assert result.exit_code == 1 and "not a BCCD folder" in result.output and not (tmp_path / "s").exists()
