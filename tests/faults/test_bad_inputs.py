"""Bad input data: ``preprocess`` and ``train`` give the same one line per bad file, exit 1, and make
nothing (no output folder, no run folder); ``--skip-bad`` carries on; ``train``'s checks are cached."""

from __future__ import annotations

import io
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import medseg_dfl.io.checks as checks
from medseg_dfl.cli.main import app

runner = CliRunner()
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _smear_pair(root: Path, name: str, size: int = 24) -> None:
    rng = np.random.default_rng(len(name))
    label = np.zeros((size, size), np.uint8)
    label[: size // 2] = 1
    label[2:5, 2:5] = 2
    label[20, 20] = 3
    _png(root / "images" / f"{name}.png", (rng.random((size, size, 3)) * 255).astype(np.uint8))
    _png(root / "labels" / f"{name}.png", label)


def _volume_pair(root: Path, name: str, image=None, label=None, label_affine=AFFINE) -> None:
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    if image is None:
        image = np.full((12, 12, 8), -1000, np.int16)
        image[3:9, 3:9, 2:6] = 100
    if label is None:
        label = np.zeros((12, 12, 8), np.uint8)
        label[3:9, 3:9, 2:6] = 1
        label[5:7, 5:7, 3:5] = 2
    nib.save(nib.Nifti1Image(image, AFFINE), root / "images" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(label, label_affine), root / "labels" / f"{name}.nii.gz")


def _config(tmp: Path, root: Path, dims: int) -> Path:
    if dims == 2:
        data = {"root": str(root), "cache": "none"}
        transforms = {"patch_size": [16, 16], "num_samples": 1}
    else:
        data = {"root": str(root), "cache": "none", "spatial_dims": 3, "modality": "ct", "in_channels": 1,
                "class_names": ["background", "organ", "lesion"]}  # fmt: skip
        transforms = {"patch_size": [8, 8, 8], "num_samples": 1, "target_spacing": [1.0, 1.0, 2.0]}
    values = {"experiment": {"name": "bad"}, "data": data, "transforms": transforms,
              "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
              "train": {"epochs": 1, "batch_size": 2}}  # fmt: skip
    path = tmp / f"config{dims}d.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8) + 90).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


# kind -> (dims, make(root), the file named, words of the reason)
def _corrupt(root):
    (root / "images" / "c.png").write_bytes(os.urandom(300))


def _truncated(root):
    _truncated_png(root / "images" / "c.png")


def _not_an_image(root):
    (root / "images" / "c.png").unlink()
    (root / "images" / "c.tif").write_text("this is a text file, not a TIFF\n")


def _missing_label(root):
    (root / "labels" / "c.png").unlink()


def _duplicate_stem(root):
    Image.open(root / "images" / "c.png").save(root / "images" / "c.tif")


def _shape_mismatch(root):
    _png(root / "labels" / "c.png", np.zeros((20, 24), np.uint8))


def _labels_too_high(root):
    label = np.zeros((24, 24), np.uint8)
    label[3, 3] = 7
    _png(root / "labels" / "c.png", label)


def _empty(root):
    for folder in ("images", "labels"):
        for path in (root / folder).iterdir():
            path.unlink()


def _affine_mismatch(root):
    _volume_pair(root, "c", label_affine=np.diag([1.0, 1.0, 3.0, 1.0]))


def _four_d(root):
    _volume_pair(root, "c", image=np.zeros((12, 12, 8, 2), np.int16))


def _float_labels(root):
    label = np.zeros((12, 12, 8), np.float32)
    label[4, 4, 4] = 0.5
    _volume_pair(root, "c", label=label)


def _nan_image(root):
    image = np.zeros((12, 12, 8), np.float32)
    image[1, 2, 3] = np.nan
    _volume_pair(root, "c", image=image)


KINDS = {
    "corrupt bytes": (2, _corrupt, "images/c.png", "cannot read image"),
    "truncated png": (2, _truncated, "images/c.png", "cannot read image"),
    "non-image with image suffix": (2, _not_an_image, "images/c.tif", "cannot read image"),
    "missing label": (2, _missing_label, "images/c.png", "images without a label"),
    "duplicate stem": (2, _duplicate_stem, "c.tif", "share a stem"),
    "shape mismatch": (2, _shape_mismatch, "labels/c.png", "does not match image shape"),
    "labels >= classes": (2, _labels_too_high, "labels/c.png", "[7] are outside 0..3"),
    "empty folder": (2, _empty, "", "no image/label pairs found"),
    "affine mismatch": (3, _affine_mismatch, "labels/c.nii.gz", "label affine differs"),
    "4D volume": (3, _four_d, "images/c.nii.gz", "4D image"),
    "float labels": (3, _float_labels, "labels/c.nii.gz", "must be integers"),
    "NaN image": (3, _nan_image, "images/c.nii.gz", "1 NaN"),
}


def _dataset(tmp_path: Path, kind: str) -> tuple[Path, Path, str, str]:
    dims, make, named, reason = KINDS[kind]
    root = tmp_path / "raw"
    for name in ("a", "b", "c", "d"):
        (_smear_pair if dims == 2 else _volume_pair)(root, name)
    make(root)
    return root, _config(tmp_path, root, dims), named, reason


def _assert_one_line_per_bad_file(output: str, named: str, reason: str) -> None:
    text = " ".join(output.split())
    assert "Traceback" not in output
    assert reason in text, output
    if named:
        lines = [line for line in output.splitlines() if named in line]
        assert lines and reason in " ".join(lines[0].split()), output
    assert output.strip().splitlines()[-1].startswith("error:"), output


@pytest.mark.parametrize("kind", list(KINDS))
def test_preprocess_names_each_bad_file(tmp_path, kind):
    root, config, named, reason = _dataset(tmp_path, kind)
    result = runner.invoke(app, ["preprocess", str(root), str(tmp_path / "out"), "--config", str(config), "-q"])
    assert result.exit_code == 1, result.output
    _assert_one_line_per_bad_file(result.output, named, reason)
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("kind", list(KINDS))
def test_train_checks_its_data_like_preprocess(tmp_path, kind):
    root, config, named, reason = _dataset(tmp_path, kind)
    run = tmp_path / "runs" / "r"
    result = runner.invoke(app, ["train", str(config), "--output", str(run), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 1, result.output
    _assert_one_line_per_bad_file(result.output, named, reason)
    assert not run.exists()  # no run folder left behind


def test_train_skip_bad_trains_without_them(tmp_path):
    root, config, _, _ = _dataset(tmp_path, "labels >= classes")
    run = tmp_path / "runs" / "r"
    result = runner.invoke(app, ["train", str(config), "-o", str(run), "--device", "cpu", "--no-progress", "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "skipped bad file" in result.output and "labels/c.png" in result.output
    assert (run / "best.pt").is_file()


def test_train_check_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    root, config, _, _ = _dataset(tmp_path, "shape mismatch")
    reads: list[str] = []
    real = checks.validate_pair

    def counting(pair, *args, **kwargs):
        reads.append(pair.case_id)
        return real(pair, *args, **kwargs)

    monkeypatch.setattr(checks, "validate_pair", counting)
    args = ["train", str(config), "-o", str(tmp_path / "runs" / "r"), "--device", "cpu", "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 1 and sorted(reads) == ["a", "b", "c", "d"]
    second = runner.invoke(app, args)
    assert second.exit_code == 1 and sorted(reads) == ["a", "b", "c", "d"]  # nothing read again
    assert "does not match image shape" in second.output  # the bad file is still named
    _png(root / "labels" / "c.png", np.zeros((24, 24), np.uint8))  # fixed: size and mtime change
    third = runner.invoke(app, [*args, "--set", "train.epochs=1"])
    assert third.exit_code == 0, third.output
    assert sorted(reads) == ["a", "b", "c", "c", "d"]  # only the changed pair is read again
    assert (tmp_path / "runs" / ".medseg-checked.json").is_file()


def test_preprocess_skip_bad_skips_an_unreadable_first_file_without_config(tmp_path):
    root = tmp_path / "raw"
    for name in ("a", "b", "c", "d"):
        _smear_pair(root, name)
    (root / "images" / "a.png").write_bytes(b"\x89PNG garbage")
    result = runner.invoke(app, ["preprocess", str(root), str(tmp_path / "out"), "--skip-bad", "-q"])
    assert result.exit_code == 0, result.output
    assert "3 pairs" in result.output and "images/a.png: cannot read image" in " ".join(result.output.split())


def test_non_finite_loss_names_the_files_of_the_batch(tmp_path, monkeypatch):
    import torch

    import medseg_dfl.engine.training as training

    _, config, _, _ = _dataset(tmp_path, "empty folder")
    root = tmp_path / "raw2"
    for name in ("a", "b", "c"):
        _smear_pair(root, name)
    monkeypatch.setattr(training, "_train_step", lambda *a, **k: torch.tensor(float("nan")))
    run = tmp_path / "runs" / "nan"
    result = runner.invoke(app, ["train", str(config), "-o", str(run), "--set", f"data.root={root}",
                                 "--device", "cpu", "--no-progress"])  # fmt: skip
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "training loss became nan at step 1 on" in text and str(root / "images") in text and "Traceback" not in text


def _layout_images_labels(root):
    _smear_pair(root, "a")
    Image.open(root / "images" / "a.png").save(root / "images" / "a.tif")


def _layout_cellpose(root):
    _smear_pair(root, "a")
    for name, folder in (("a.png", "images"), ("a_masks.png", "labels")):
        (root / folder / "a.png").rename(root / name)
        (root / folder).rmdir()
    Image.open(root / "a.png").save(root / "a.tif")


def _layout_dataset_json(root):
    import json

    _smear_pair(root, "a")
    Image.open(root / "images" / "a.png").save(root / "images" / "a.tif")
    Image.open(root / "labels" / "a.png").save(root / "labels" / "a.tif")
    entries = [{"image": f"images/a.{s}", "label": f"labels/a.{s}"} for s in ("png", "tif")]
    (root / "dataset.json").write_text(json.dumps({"training": entries}))


@pytest.mark.parametrize("layout", [_layout_images_labels, _layout_cellpose, _layout_dataset_json])
def test_duplicate_stems_are_rejected_in_every_layout(tmp_path, layout):
    from medseg_dfl.io.pairing import discover_pairs

    layout(tmp_path / "raw")
    with pytest.raises(ValueError, match=r"share a stem.*a\.png, .*a\.tif"):
        discover_pairs(tmp_path / "raw")
