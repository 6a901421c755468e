"""Issue 23: no silent wrong answers and no resource bombs from hostile input files.

Non-finite pixels, EXIF-rotated images and files declaring huge sizes are refused with one line
naming the file; the other files of the run are still done, and the run exits non-zero."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
from medseg_dfl.engine.evaluation import evaluate_folders
from medseg_dfl.io.errors import DataError
from medseg_dfl.io.limits import check_declared_size
from medseg_dfl.io.readers import load_image
from medseg_dfl.networks import build_network

runner = CliRunner()
NET = {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
CONFIG_3D = {
    "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["background", "organ"]},
    "transforms": {"patch_size": [16, 16, 16]},
    "network": NET,
}
SMEAR_CLASSES = ["background", "rbc", "wbc", "platelet"]
CONFIG_2D = {
    "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3, "class_names": SMEAR_CLASSES},
    "transforms": {"patch_size": [16, 16]},
    "network": NET,
}


def _checkpoint(path: Path, values: dict, **extra) -> Path:
    cfg = config_from_dict(values)
    torch.manual_seed(0)
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(format_version=1, model_state=build_network(cfg).state_dict(), config=config_to_dict(cfg),
                   class_names=cfg.data.class_names, **extra)  # fmt: skip
    return save_checkpoint(path, payload)


@pytest.fixture(scope="module")
def ckpt3d(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt3d") / "best.pt", CONFIG_3D)


@pytest.fixture(scope="module")
def ckpt2d(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt2d") / "best.pt", CONFIG_2D,
                       scale={"cell_diameter_px": 25.0, "source": "test"})  # fmt: skip


def _volume(path: Path, dtype=np.float32, nan: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.full((12, 12, 8), -1000, dtype)
    volume[3:9, 3:9, 2:6] = 200
    if nan:
        volume[5, 5, 3] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    return path


def _smear(path: Path, size: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _float_tiff(path: Path, bad=np.nan) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(1).random((48, 48, 3)).astype(np.float32) * 255
    image[10, 10, 1] = bad
    tifffile.imwrite(path, image, photometric="rgb")
    return path


def _skipped_lines(output: str, name: str) -> list[str]:
    return [" ".join(line.split()) for line in output.splitlines() if name in line and "skipped" in line]


# --------------------------------------------------------------------------- 1. non-finite pixels


def test_infer_refuses_a_volume_with_a_nan_voxel_and_does_the_others(ckpt3d, tmp_path):
    folder = tmp_path / "in"
    _volume(folder / "bad.nii.gz", nan=True)
    _volume(folder / "good.nii.gz")
    result = runner.invoke(app, ["infer", str(ckpt3d), str(folder), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = _skipped_lines(result.output, "bad.nii.gz")
    assert len(lines) == 1 and "1 non-finite value(s) (1 NaN, 0 infinite)" in lines[0], result.output
    assert (tmp_path / "out" / "good.nii.gz").is_file() and not (tmp_path / "out" / "bad.nii.gz").exists()
    assert "Traceback" not in result.output


def test_infer_refuses_a_float_tiff_with_an_inf_pixel(ckpt2d, tmp_path):
    tiff = _float_tiff(tmp_path / "in" / "smear.tif", bad=np.inf)
    result = runner.invoke(app, ["infer", str(ckpt2d), str(tiff), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = _skipped_lines(result.output, "smear.tif")
    assert len(lines) == 1 and "1 non-finite value(s) (0 NaN, 1 infinite)" in lines[0], result.output
    assert not (tmp_path / "out" / "smear.tif").exists()


def test_count_refuses_a_nan_image_and_counts_the_others(ckpt2d, tmp_path):
    folder = tmp_path / "in"
    _float_tiff(folder / "bad.tif")
    _smear(folder / "good.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["count", str(ckpt2d), str(folder), str(out), "--cell-diameter", "25"])
    assert result.exit_code == 1, result.output
    skipped = [" ".join(line.split()) for line in result.output.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "bad.tif" in skipped[0] and "1 non-finite value(s)" in skipped[0], result.output
    with open(out / "counts.csv", newline="") as handle:
        assert [row["image"] for row in csv.DictReader(handle)] == ["good.png"]


def test_evaluate_refuses_a_label_map_with_nan(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    volume = np.zeros((6, 6, 4), np.float32)
    volume[2:4, 2:4, 1:3] = 1
    for folder in (pred, truth):
        folder.mkdir()
        nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "a.nii.gz")
    volume[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), pred / "a.nii.gz")
    with pytest.raises(DataError, match=r"a\.nii\.gz: label map has 1 non-finite value\(s\)"):
        evaluate_folders(pred, truth)


# --------------------------------------------------------------------------- 2. EXIF orientation


def test_infer_refuses_an_exif_rotated_jpeg(ckpt2d, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((40, 24, 3), 120, np.uint8)).save(folder / "rotated.jpg", exif=exif)
    _smear(folder / "upright.png")
    result = runner.invoke(app, ["infer", str(ckpt2d), str(folder), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = _skipped_lines(result.output, "rotated.jpg")
    assert len(lines) == 1 and "EXIF orientation 6" in lines[0], result.output
    assert (tmp_path / "out" / "upright.png").is_file() and not (tmp_path / "out" / "rotated.png").exists()


# --------------------------------------------------------------------------- 3. declared sizes


def _huge_nifti(path: Path) -> Path:
    """A 400-byte file whose header declares 20000 x 20000 x 3 float32 voxels (4.8 GB)."""
    header = nib.Nifti1Header()
    header.set_data_shape((20000, 20000, 3))
    header.set_data_dtype(np.float32)
    image = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), np.eye(4), header)
    image.header.set_data_shape((20000, 20000, 3))
    with open(path, "wb") as handle:
        image.header.write_to(handle)
        handle.write(b"\0" * 64)
    return path


def test_a_small_file_declaring_a_huge_volume_is_refused_before_decoding(ckpt3d, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    bomb = _huge_nifti(folder / "bomb.nii")
    assert bomb.stat().st_size < 1000
    with pytest.raises(DataError, match=r"bomb\.nii: declares 20000 x 20000 x 3 = 1,200,000,000 voxels"):
        load_image(bomb)
    _volume(folder / "good.nii.gz")
    result = runner.invoke(app, ["infer", str(ckpt3d), str(folder), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = _skipped_lines(result.output, "bomb.nii")
    assert len(lines) == 1 and "--max-voxels" in lines[0], result.output
    assert (tmp_path / "out" / "good.nii.gz").is_file()


def _tiled_tiff(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), tile=(16, 16), compression="zlib", photometric="rgb")


def _mha(path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16)), str(path))


def _png(path: Path) -> None:
    Image.fromarray(np.zeros((8, 64, 3), np.uint8)).save(path)


@pytest.mark.parametrize(("name", "make", "size"), [("a.tif", _tiled_tiff, 64 * 64 * 3), ("a.mha", _mha, 256),
                                                    ("a.png", _png, 8 * 64 * 3),
                                                    ("a.nii.gz", _volume, 12 * 12 * 8)])  # fmt: skip
def test_every_reader_checks_the_declared_size_against_the_limit(tmp_path, monkeypatch, name, make, size):
    path = tmp_path / name
    make(path)
    check_declared_size(path, max_voxels=size)  # at the limit: fine
    with pytest.raises(DataError, match=f"= {size:,} voxels x channels, more than the limit of {size - 1:,}"):
        load_image(path, max_voxels=size - 1)


def test_infer_max_voxels_flag_sets_the_limit(ckpt3d, tmp_path):
    image = _volume(tmp_path / "in" / "a.nii.gz")
    refused = runner.invoke(app, ["infer", str(ckpt3d), str(image), str(tmp_path / "out"), "--max-voxels", "1000"])
    assert refused.exit_code == 1 and "more than the limit of 1,000" in " ".join(refused.output.split())
    allowed = runner.invoke(app, ["infer", str(ckpt3d), str(image), str(tmp_path / "out"), "--max-voxels", "1152"])
    assert allowed.exit_code == 0, allowed.output


# --------------------------------------------------------------------------- 7. outputs that collide


def test_count_refuses_two_inputs_with_one_stem_like_infer(ckpt2d, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    _smear(folder / "a.png")
    _smear(folder / "a.jpg")
    for command in ("count", "infer"):
        result = runner.invoke(app, [command, str(ckpt2d), str(folder), str(out / command)])
        assert result.exit_code == 1, result.output
        line = " ".join(result.output.split())
        assert "a.jpg" in line and "a.png" in line and "would both be written to" in line, (command, result.output)
        assert "Traceback" not in result.output and not (out / command).exists()


# --------------------------------------------------------------------------- 11. formulas in CSV files


def test_file_names_that_spreadsheets_would_run_are_neutralised(ckpt2d, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for name in ("=1+2.png", "+x.png", "-y.png", "@z.png", "plain.png"):
        _smear(folder / name, size=64)
    result = runner.invoke(app, ["count", str(ckpt2d), str(folder), str(out), "--cell-diameter", "8"])
    assert result.exit_code == 0, result.output
    with open(out / "counts.csv", newline="") as handle:
        images = sorted(row["image"] for row in csv.DictReader(handle))
    assert images == sorted(["'=1+2.png", "'+x.png", "'-y.png", "'@z.png", "plain.png"])
    with open(out / "cells.csv", newline="") as handle:
        cells = {row["image"] for row in csv.DictReader(handle)}
    assert cells and all(not name.startswith(("=", "+", "-", "@")) for name in cells), cells


# --------------------------------------------------------------------------- 6. one train run per run folder


def _train_config(tmp_path: Path, **sections) -> Path:
    from medseg_dfl.data.synthetic import generate_sample_data

    data = tmp_path / "data"
    if not data.exists():
        generate_sample_data(data, "blood-smear", count=4, size=40, seed=2)
    values = {"experiment": {"name": "hostile"}, "data": {"root": str(data), "cache": "none"},
              "transforms": {"patch_size": [32, 32], "num_samples": 1},
              "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
              "train": {"epochs": 1, "batch_size": 2}}  # fmt: skip
    for key, value in sections.items():
        values.setdefault(key, {}).update(value)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_second_train_on_a_run_folder_in_use_is_refused(tmp_path):
    from medseg_dfl.engine.output_claims import claim_path

    config, run = _train_config(tmp_path), tmp_path / "run"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim_path(run).write_text(f"{socket.gethostname()} {other.pid}\n")
        result = runner.invoke(app, ["train", str(config), "-o", str(run), "--device", "cpu", "--no-progress"])
    finally:
        other.kill()
        other.wait()
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert f"another train run is writing to it (host and pid {socket.gethostname()} {other.pid})" in line
    assert "Traceback" not in result.output and not run.exists()
    assert claim_path(run).exists()  # the live run's claim is left to it
    # once its owner is gone, the claim is stale: the next run takes it over, trains, and releases it
    done = runner.invoke(app, ["train", str(config), "-o", str(run), "--device", "cpu", "--no-progress"])
    assert done.exit_code == 0, done.output
    assert (run / "last.pt").is_file() and not claim_path(run).exists()


# --------------------------------------------------------------------------- 5, 8, 13, 14. configs


def _train(config: Path, *args: str):
    return runner.invoke(app, ["train", str(config), *args, "--device", "cpu", "--no-progress"])


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return " ".join(lines[0].split())


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", "..", ""])
def test_experiment_name_must_be_a_plain_folder_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    config = _train_config(tmp_path, experiment={"name": name})
    line = _one_error_line(_train(config))
    assert f"experiment.name {name!r} must be a plain folder name" in line
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("transforms.patch_size=[0, 0]", "transforms.patch_size [0, 0]: every size must be >= 1"),
    ("transforms.patch_size=[-32, 32]", "transforms.patch_size [-32, 32]: every size must be >= 1"),
    ("inference.roi_size=[0, 32]", "inference.roi_size [0, 32]: every size must be >= 1"),
    ("optim.lr=.nan", "optim.lr: must be a finite number, got nan"),
    ("loss.kwargs.gamma=.inf", "loss.kwargs.gamma: must be a finite number, got inf"),
])  # fmt: skip
def test_unusable_numbers_are_refused_before_the_run_folder(tmp_path, override, message):
    config, run = _train_config(tmp_path), tmp_path / "run"
    line = _one_error_line(_train(config, "-o", str(run), "--set", override))
    assert f"--set: {message}" in line and not run.exists()


def test_duplicate_yaml_keys_are_refused(tmp_path):
    config = _train_config(tmp_path)
    config.write_text(config.read_text() + "train:\n  epochs: 5\n")
    line = _one_error_line(_train(config, "-o", str(tmp_path / "run")))
    assert f"{config}: key 'train' is given twice in one mapping" in line
    config.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    assert "key 'lr' is given twice in one mapping (line 3)" in _one_error_line(_train(config))


def test_yaml_bombs_are_refused_quickly_in_one_line(tmp_path):
    import time

    config = tmp_path / "laughs.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    config.write_text("loss:\n  name: ce\n  kwargs:\n" + "".join(f"    {line}\n" for line in lines))
    start = time.monotonic()
    line = _one_error_line(_train(config))
    assert "more than 100,000 values once its aliases (*name) are expanded" in line
    config.write_text("loss:\n  kwargs:\n    deep: " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nested more than 32 levels deep" in _one_error_line(_train(config))
    assert time.monotonic() - start < 20


def test_a_run_that_fails_in_its_first_epoch_leaves_no_run_folder(tmp_path, monkeypatch):
    import medseg_dfl.engine.training as training

    monkeypatch.setattr(training, "_train_step", lambda *a, **k: torch.tensor(float("nan")))
    config, run = _train_config(tmp_path), tmp_path / "run"
    result = _train(config, "-o", str(run))
    assert result.exit_code == 1 and "training loss became nan" in " ".join(result.output.split())
    assert not run.exists()
    # and a second try is not refused as "already holds a run"
    again = _train(config, "-o", str(run))
    assert "already holds a run" not in again.output and not run.exists()


# --------------------------------------------------------------------------- 9. dataset.json outside its folder


@pytest.mark.parametrize("where", ["image", "label"])
@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_dataset_json_entries_outside_the_data_folder_are_refused(tmp_path, where, kind):
    import json

    from medseg_dfl.io.pairing import discover_pairs

    root, outside = tmp_path / "data", tmp_path / "outside"
    for folder in (root / "images", root / "labels", outside):
        folder.mkdir(parents=True)
    for path in (root / "images" / "a.png", root / "labels" / "a.png", outside / "x.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    escaping = "../outside/x.png" if kind == "dotdot" else str(outside / "x.png")
    entry = {"image": "images/a.png", "label": "labels/a.png"}
    entry[where] = escaping
    (root / "dataset.json").write_text(json.dumps({"training": [entry]}))
    with pytest.raises(ValueError, match="lies outside the data folder") as info:
        discover_pairs(root)
    assert repr(escaping) in str(info.value) and "\n" not in str(info.value)


def test_dataset_json_source_admits_its_own_folder_only(tmp_path):
    import json

    from medseg_dfl.io.pairing import discover_pairs

    raw, pre = tmp_path / "raw", tmp_path / "pre"
    for folder in (raw, pre):
        folder.mkdir()
    for name in ("a.png", "a_label.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(raw / name)
    entry = {"image": str(raw / "a.png"), "label": str(raw / "a_label.png")}
    (pre / "dataset.json").write_text(json.dumps({"source": str(raw), "training": [entry]}))
    assert [p.image for p in discover_pairs(pre)] == [raw / "a.png"]  # what `preprocess` writes
    (pre / "dataset.json").write_text(json.dumps({"source": "/", "training": [entry]}))
    with pytest.raises(ValueError, match="lies outside the data folder"):
        discover_pairs(pre)


def test_dataset_json_include_folders_admits_the_declared_sibling_only(tmp_path):
    import json

    from medseg_dfl.io.pairing import discover_pairs

    root, sibling, other = tmp_path / "data", tmp_path / "synthetic", tmp_path / "other"
    for folder in (root, sibling, other):
        folder.mkdir()
    for path in (sibling / "s.png", sibling / "s_label.png", other / "x.png", other / "x_label.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    listed = {"image": "../synthetic/s.png", "label": "../synthetic/s_label.png"}
    (root / "dataset.json").write_text(json.dumps({"include_folders": ["../synthetic"], "training": [listed]}))
    assert [p.image.resolve() for p in discover_pairs(root)] == [(sibling / "s.png").resolve()]
    stray = {"image": "../other/x.png", "label": "../other/x_label.png"}
    (root / "dataset.json").write_text(json.dumps({"include_folders": ["../synthetic"], "training": [stray]}))
    with pytest.raises(ValueError, match="lies outside the data folder"):
        discover_pairs(root)
    (root / "dataset.json").write_text(json.dumps({"include_folders": [str(other)], "training": [stray]}))
    with pytest.raises(ValueError, match="'include_folders' must be a list of relative folder paths"):
        discover_pairs(root)


# --------------------------------------------------------------------------- 12. NIfTI without geometry


def _zero_affine_nifti(path: Path) -> Path:
    """sform and qform both unusable: an all-zero sform (code 1), zero quaternion and pixdims."""
    volume = np.zeros((12, 12, 8), np.float32)
    header = nib.Nifti1Header()
    header.set_data_shape(volume.shape)
    header.set_data_dtype(np.float32)
    header["sform_code"], header["qform_code"] = 1, 1
    for row in ("srow_x", "srow_y", "srow_z"):
        header[row] = 0
    header["pixdim"] = [1, 0, 0, 0, 0, 0, 0, 0]
    header["vox_offset"] = 352
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.binaryblock + b"\0" * 4 + volume.tobytes())
    return path


def test_a_nifti_without_usable_affine_is_skipped_in_one_line(ckpt3d, tmp_path):
    folder = tmp_path / "in"
    _zero_affine_nifti(folder / "zero.nii")
    _volume(folder / "good.nii.gz")
    result = runner.invoke(app, ["infer", str(ckpt3d), str(folder), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = _skipped_lines(result.output, "zero.nii")
    assert len(lines) == 1 and "affine (sform, else qform) is singular or not finite" in lines[0], result.output
    assert (tmp_path / "out" / "good.nii.gz").is_file() and not list((tmp_path / "out").glob("zero*"))
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- 15. resume after editing config.yaml


def test_resume_refuses_to_overwrite_an_edited_run_config(tmp_path):
    config, run = _train_config(tmp_path), tmp_path / "run"
    assert _train(config, "-o", str(run)).exit_code == 0
    assert _train(config, "-o", str(run), "--resume", "--set", "train.epochs=2").exit_code == 0  # unedited: fine
    edited = (run / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.01")
    assert edited != (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(edited)
    line = _one_error_line(_train(config, "-o", str(run), "--resume", "--set", "train.epochs=3"))
    assert f"{run / 'config.yaml'} was edited after the run's last checkpoint; --resume uses the CONFIG given" in line
    assert (run / "config.yaml").read_text() == edited  # the edit is kept


def test_dataset_json_may_draw_on_folders_it_declares(tmp_path):
    import json

    from medseg_dfl.io.pairing import discover_pairs

    other, sample = tmp_path / "other", tmp_path / "sample"
    for folder in (other, sample):
        folder.mkdir()
    for name in ("a.png", "a_label.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(other / name)
    entry = {"image": "../other/a.png", "label": "../other/a_label.png"}
    (sample / "dataset.json").write_text(json.dumps({"include_folders": ["../other"], "training": [entry]}))
    assert [p.case_id for p in discover_pairs(sample)] == ["a"]
    (sample / "dataset.json").write_text(json.dumps({"include_folders": ["../../../../../../../.."],
                                                     "training": [{"image": "/etc/hostname"}]}))  # fmt: skip
    with pytest.raises(ValueError, match="lies outside the data folder"):
        discover_pairs(sample)


def _zeros_zip(path: Path, n_bytes: int) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("bomb/zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(n_bytes >> 20):
                member.write(chunk)
    return path


def test_archive_declaring_too_many_bytes_is_refused_before_extracting(tmp_path):
    from medseg_dfl.datasets._staging import extract_archive

    archive, dest = _zeros_zip(tmp_path / "bomb.zip", 50 << 20), tmp_path / "dest"
    assert archive.stat().st_size < 1 << 20  # highly compressible
    with pytest.raises(ValueError, match=r"bomb\.zip: archive declares 52,428,800 bytes") as err:
        extract_archive(archive, dest, max_bytes=10 << 20)
    assert "\n" not in str(err.value)
    assert not dest.exists()  # nothing written
    assert extract_archive(archive, dest) == dest and (dest / "bomb" / "zeros.bin").stat().st_size == 50 << 20


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_with_too_many_members_is_refused_before_extracting(tmp_path, kind):
    import io
    import tarfile
    import zipfile

    from medseg_dfl.datasets._staging import extract_archive

    archive, dest = tmp_path / f"many.{kind}", tmp_path / "dest"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for i in range(20):
                zf.writestr(f"f{i}.txt", "x")
    else:
        with tarfile.open(archive, "w") as tf:
            for i in range(20):
                info = tarfile.TarInfo(f"f{i}.txt")
                info.size = 1
                tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match=rf"many\.{kind}: archive has 20 members, more than the limit of 10"):
        extract_archive(archive, dest, max_files=10)
    assert not dest.exists()


def test_archive_bytes_written_are_capped_even_when_sizes_are_not_declared_up_front(tmp_path, monkeypatch):
    from medseg_dfl.datasets import _staging

    archive, dest = _zeros_zip(tmp_path / "bomb.zip", 3 << 20), tmp_path / "dest"
    monkeypatch.setattr(_staging, "_check_declared", lambda *args: None)  # as if the header lied
    with pytest.raises(ValueError, match=r"bomb\.zip: archive holds more than 2,097,152 bytes"):
        _staging.extract_archive(archive, dest, max_bytes=2 << 20)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 2 << 20


def test_tar_entry_landing_outside_is_reported_as_such(tmp_path):
    import io
    import tarfile

    from medseg_dfl.datasets import FetchError
    from medseg_dfl.datasets._staging import extract_archive

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "work").mkdir()
    with pytest.raises(FetchError) as err:
        extract_archive(archive, tmp_path / "work" / "dest")
    message = str(err.value)
    assert "entry '../evil.txt' would land outside the folder" in message
    assert "truncated or corrupt" not in message
    assert not (tmp_path / "work" / "evil.txt").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_fetch_refuses_a_symlinked_output_folder(tmp_path, overwrite):
    target, link = tmp_path / "target", tmp_path / "out"
    target.mkdir()
    link.symlink_to(target)
    source = tmp_path / "src"
    source.mkdir()
    args = ["datasets", "fetch", "bccd", str(link), "--from", str(source), "--quiet"]
    line = _one_error_line(runner.invoke(app, [*args, "--overwrite"] if overwrite else args))
    assert f"OUTPUT {link} is a symbolic link (to {target}); give its target" in line
    assert link.is_symlink() and link.resolve() == target.resolve() and target.is_dir()
    assert not any(target.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src", "target"]  # no .old / .partial left


def test_messages_stay_one_line_whatever_the_file_name(tmp_path):
    from medseg_dfl.cli._common import one_line

    assert one_line("bad\nname.png: unreadable") == "bad\\nname.png: unreadable"
    assert one_line("tab\there \x1b[31m") == "tab\\there \\x1b[31m"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "evil\nerror: forged.png").write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["count", str(folder), str(tmp_path / "out"), "--device", "cpu"],
                                env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 1
    assert "evil\\nerror: forged.png" in result.output and "\nerror: forged.png" not in result.output


def test_a_wrong_dataset_names_what_the_user_gave_not_a_scratch_folder(tmp_path):
    import zipfile

    from medseg_dfl.datasets.registry import fetch_dataset

    archive = tmp_path / "wrong.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("something/readme.txt", "not the data set")
    with pytest.raises(FileNotFoundError) as info:
        fetch_dataset("wbc", tmp_path / "out", source=archive)
    assert str(info.value).startswith(f"{archive}: not the segmentation_WBC repository")
    assert ".work" not in str(info.value) and "extracted" not in str(info.value)
