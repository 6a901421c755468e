"""Synthetic sample data: determinism, label sets, class balance, NIfTI geometry, overwrite safety."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg_dfl.data.synthetic import generate_sample_data, make_blood_smear, make_volume, sample_seed

SMEAR_SIZE = 128
VOLUME_SHAPE = (40, 40, 24)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smears")
    generate_sample_data(out, "blood-smear", 5, SMEAR_SIZE, seed=3, val_fraction=0.2)
    return out


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("volumes")
    generate_sample_data(out, "volume", 3, VOLUME_SHAPE, seed=3, val_fraction=0.34)
    return out


@pytest.mark.parametrize("kind, size, fixture", [("blood-smear", SMEAR_SIZE, "smears"), ("volume", VOLUME_SHAPE, "volumes")])
def test_same_seed_gives_identical_bytes_and_other_seed_differs(kind, size, fixture, request, tmp_path):
    first = request.getfixturevalue(fixture)
    count = len(list((first / "images").iterdir()))
    val = 0.2 if kind == "blood-smear" else 0.34
    generate_sample_data(tmp_path / "again", kind, count, size, seed=3, val_fraction=val)
    assert _files(tmp_path / "again") == _files(first)
    generate_sample_data(tmp_path / "other", kind, 1, size, seed=4)
    name = "images/smear_000.png" if kind == "blood-smear" else "images/vol_000.nii.gz"
    assert (tmp_path / "other" / name).read_bytes() != (first / name).read_bytes()


def test_sample_does_not_depend_on_count(smears, tmp_path):
    generate_sample_data(tmp_path, "blood-smear", 2, SMEAR_SIZE, seed=3)
    assert (tmp_path / "images/smear_001.png").read_bytes() == (smears / "images/smear_001.png").read_bytes()
    image, label = make_blood_smear(SMEAR_SIZE, sample_seed(3, "blood-smear", 1))
    assert np.array_equal(np.asarray(Image.open(smears / "images/smear_001.png")), image)
    assert np.array_equal(np.asarray(Image.open(smears / "labels/smear_001.png")), label)


def test_smear_labels_and_class_imbalance(smears):
    counts = np.zeros(4, np.int64)
    for path in sorted((smears / "labels").iterdir()):
        label = np.asarray(Image.open(path))
        assert label.shape == (SMEAR_SIZE, SMEAR_SIZE) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 2, 3}
        counts += np.bincount(label.ravel(), minlength=4)
    freq = counts / counts.sum()
    assert 0.2 < freq[1] < 0.7, freq  # RBCs are the bulk of the foreground
    assert 0 < freq[2] < 0.05 and 0 < freq[3] < 0.05, freq
    image = np.asarray(Image.open(smears / "images/smear_000.png"))
    assert image.shape == (SMEAR_SIZE, SMEAR_SIZE, 3) and image.dtype == np.uint8


def test_smear_colours_rbc_pink_wbc_nucleus_purple():
    image, label = make_blood_smear(256, 7)
    rgb = image.astype(float)
    background, rbc = rgb[label == 0].mean(0), rgb[label == 1].mean(0)
    assert rbc[0] > rbc[1] and rbc[0] > rbc[2] and background.mean() > rbc.mean()  # pink, darker than glass
    if (label == 2).any():
        darkest = rgb[label == 2][rgb[label == 2].sum(1) < np.percentile(rgb[label == 2].sum(1), 10)].mean(0)
        assert darkest[2] > darkest[1] and darkest[0] > darkest[1]  # purple nucleus: R, B above G


def test_dataset_json_lists_every_pair(smears):
    meta = json.loads((smears / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "rbc", "2": "wbc", "3": "platelet"}
    assert len(meta["training"]) == 4 and len(meta["validation"]) == 1
    for entry in meta["training"] + meta["validation"]:
        assert (smears / entry["image"]).is_file() and (smears / entry["label"]).is_file()
        assert Path(entry["image"]).name == Path(entry["label"]).name
    assert meta["validation"][0]["image"] == "images/smear_004.png"
    assert abs(sum(meta["class_frequencies"].values()) - 1) < 1e-4
    assert (smears / "preview.png").stat().st_size < 150_000


def test_volume_geometry_labels_and_intensities(volumes):
    lesion = organ = total = 0
    for path in sorted((volumes / "images").iterdir()):
        image = nib.load(path)
        label = nib.load(volumes / "labels" / path.name)
        assert image.shape == VOLUME_SHAPE and image.get_data_dtype() == np.int16
        assert np.allclose(label.affine, image.affine) and not np.allclose(image.affine, np.eye(4))
        assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
        spacing = np.linalg.norm(image.affine[:3, :3], axis=0)
        assert np.allclose(image.header.get_zooms(), spacing, atol=1e-4)
        assert spacing[2] > 1.5 * spacing[0]  # anisotropic: thick slices
        data, lab = np.asarray(image.dataobj), np.asarray(label.dataobj)
        assert data.min() == -1000 and data.max() > 300  # air and bone in HU
        assert set(np.unique(lab)) <= {0, 1, 2}
        assert 40 < data[lab == 2].mean() - data[lab == 0][data[lab == 0] > -500].mean()
        lesion, organ, total = lesion + (lab == 2).sum(), organ + (lab == 1).sum(), total + lab.size
    assert 0 < lesion / total < 0.01 and 0.03 < organ / total < 0.2


def test_make_volume_affine_matches_spacing():
    image, label, affine = make_volume((24, 24, 16), 1)
    assert image.shape == label.shape == (24, 24, 16)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    rotation = affine[:3, :3] / spacing
    assert np.allclose(rotation.T @ rotation, np.eye(3))  # pure rotation times spacing
    assert not np.allclose(np.abs(rotation), np.eye(3)) and np.any(affine[:3, 3] != 0)  # oblique, shifted


def test_refuses_existing_data_and_overwrite_replaces_stale(smears, tmp_path):
    before = _files(smears)
    with pytest.raises(FileExistsError, match=str(smears)):
        generate_sample_data(smears, "blood-smear", 1, SMEAR_SIZE, seed=9)
    assert _files(smears) == before
    out = tmp_path / "set"
    generate_sample_data(out, "blood-smear", 3, 64, seed=1)
    generate_sample_data(out, "blood-smear", 2, 64, seed=1, overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["smear_000.png", "smear_001.png"]


@pytest.mark.parametrize(
    "kind, count, size, message",
    [("cells", 1, 64, "kind"), ("blood-smear", 0, 64, "count"), ("blood-smear", 1, 8, "size"),
     ("volume", 1, (32, 32), "volume size")],
)
def test_bad_arguments_raise_before_writing(kind, count, size, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        generate_sample_data(tmp_path / "x", kind, count, size)
    assert not (tmp_path / "x").exists()
