"""Faults and hostile input: names outside the output folder, Rich markup in file names, symlink
loops, full disk / permission denied, unusable config values, concurrent runs on one output folder,
and what must stay refused (crafted pickles, ``!!python`` YAML, code by name)."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict, config_to_dict, load_config
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, load_checkpoint, save_checkpoint
from medseg_dfl.engine.output_claims import claim_output, claim_path
from medseg_dfl.networks import build_network

runner = CliRunner()
CONFIG_3D = {
    "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["background", "organ"]},
    "transforms": {"patch_size": [16, 16, 16]},
    "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
}
CONFIG_2D = {
    "transforms": {"patch_size": [16, 16]},
    "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
}


def _checkpoint(path: Path, values: dict) -> Path:
    cfg = config_from_dict(values)
    torch.manual_seed(0)
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(format_version=1, model_state=build_network(cfg).state_dict(), config=config_to_dict(cfg),
                   class_names=cfg.data.class_names)  # fmt: skip
    return save_checkpoint(path, payload)


def _volume(path: Path, label: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.full((12, 12, 8), 0 if label else -1000, np.int16)
    volume[3:9, 3:9, 2:6] = 1 if label else 200
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    return path


@pytest.fixture(scope="module")
def ckpt3d(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", CONFIG_3D)


def _infer(*args: object):
    return runner.invoke(app, ["infer", *map(str, args)])


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), output
    assert "Traceback" not in output, output
    return " ".join(lines[-1].split())


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name] if folder.exists() else []


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize("suffix", ["/../../X", "_a/b", "..", "_x\\y"])
def test_suffix_cannot_leave_the_output_folder(ckpt3d, tmp_path, suffix):
    image = _volume(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "deep" / "out"
    result = _infer(ckpt3d, image, out, "--suffix", suffix)
    assert result.exit_code == 1 and "--suffix" in _error_line(result.output)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != image.parent and p != ckpt3d]
    assert written == []


def test_file_names_are_printed_as_they_are_not_as_markup(ckpt3d, tmp_path):
    folder = tmp_path / "in"
    _volume(folder / "good.nii.gz")
    (folder / "bad[red]x.nii.gz").write_bytes(b"\x00" * 40)
    result = _infer(ckpt3d, folder, tmp_path / "out")
    assert result.exit_code == 1
    assert "bad[red]x.nii.gz" in result.output  # not "badx.nii.gz"


def test_recursive_follows_each_real_folder_once(ckpt3d, tmp_path):
    folder = tmp_path / "in"
    _volume(folder / "a.nii.gz")
    (folder / "loop").symlink_to(".", target_is_directory=True)
    out = tmp_path / "out"
    result = _infer(ckpt3d, folder, out, "--recursive")
    assert result.exit_code == 0, result.output
    assert "1 written" in result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz")) == ["a.nii.gz"]


# --------------------------------------------------------------------------- full disk, no permission


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_infer_is_one_line_and_leaves_nothing(ckpt3d, tmp_path, monkeypatch):
    image = _volume(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out"

    def partial_then_full(img, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a file")
        try:
            raise AttributeError("'_idat' object has no attribute 'fileno'")  # what PIL hides it behind
        except AttributeError:
            raise OSError(errno.ENOSPC, "No space left on device") from None

    monkeypatch.setattr(nib, "save", partial_then_full)
    result = _infer(ckpt3d, image, out)
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert "a.nii.gz" in line and "no space left on device" in line and "fileno" not in result.output
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no output, no temp file, no claim


def test_full_disk_at_checkpoint_time_in_train(tmp_path, monkeypatch):
    from medseg_dfl.data.synthetic import generate_sample_data

    generate_sample_data(tmp_path / "data", "blood-smear", count=4, size=40, seed=2)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"root": str(tmp_path / "data"), "cache": "none"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "train": {"epochs": 1, "batch_size": 2},
    }))  # fmt: skip

    def save_partly(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_partly)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "-o", str(run), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert ".pt" in line and "no space left on device" in line
    assert _temps(run) == [] and not (run / "best.pt").exists() and not (run / "last.pt").exists()


def _deny_mkdir(target: Path):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == target or target in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    return mkdir


@pytest.mark.parametrize("command", ["preprocess", "infer", "train"])
def test_folder_without_permission_is_one_line(ckpt3d, tmp_path, monkeypatch, command):
    locked = tmp_path / "locked" / "out"
    if command == "train":
        from medseg_dfl.data.synthetic import generate_sample_data

        generate_sample_data(tmp_path / "data", "blood-smear", count=4, size=40, seed=2)
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({
            "data": {"root": str(tmp_path / "data"), "cache": "none"},
            "transforms": {"patch_size": [32, 32], "num_samples": 1},
            "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
            "train": {"epochs": 1, "batch_size": 2},
        }))  # fmt: skip
        args = ["train", str(config), "-o", str(locked), "--device", "cpu", "--no-progress"]
    elif command == "preprocess":
        raw = tmp_path / "raw"
        for name in ("a", "b"):
            _volume(raw / "images" / f"{name}.nii.gz")
            _volume(raw / "labels" / f"{name}.nii.gz", label=True)
        args = ["preprocess", str(raw), str(locked), "-q"]
    else:
        args = ["infer", str(ckpt3d), str(_volume(tmp_path / "in" / "a.nii.gz")), str(locked)]
    monkeypatch.setattr(Path, "mkdir", _deny_mkdir(tmp_path / "locked"))
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert str(tmp_path / "locked") in line and "permission denied" in line


def test_infer_checks_the_output_folder_before_the_first_file(ckpt3d, tmp_path, monkeypatch):
    import medseg_dfl.engine.inference as inference

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(inference, "load_predictor", never)
    monkeypatch.setattr(inference.check_writable_folder.__globals__["tempfile"], "NamedTemporaryFile", _no_space)
    result = _infer(ckpt3d, _volume(tmp_path / "in" / "a.nii.gz"), tmp_path / "out")
    assert result.exit_code == 1 and "no space left on device" in _error_line(result.output)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 folder anyway (monkeypatched tests cover it)")
def test_read_only_folder_for_real(ckpt3d, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = _infer(ckpt3d, _volume(tmp_path / "in" / "a.nii.gz"), locked / "out")
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1 and "permission denied" in _error_line(result.output)


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.kwargs.gamma=abc", "--set: loss.kwargs.gamma: expected a number, got 'abc'"),
        ('loss.kwargs.gamma="$__import__(\'os\').system(\'touch pwned\')"', "looks like a MONAI bundle expression"),
        ("network.kwargs={_target_: os.system}", "bundle keys like '_target_' are not allowed"),
        ("transforms.patch_size=[30, 30]", "transforms.patch_size [30, 30] is not divisible by [4, 4]"),
        ("network.name=os.system", "network.name: 'os.system' is not one of"),
        ("loss.name=builtins.eval", "loss.name: 'builtins.eval' is not one of"),
    ],
)
def test_unusable_config_values_are_one_line(tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(tmp_path)}, "transforms": {"patch_size": [32, 32]},
                                      "network": {"kwargs": {"channels": [4, 8, 16], "strides": [2, 2]}}}))  # fmt: skip
    result = runner.invoke(app, ["train", str(config), "--set", override, "-o", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1
    assert message in _error_line(result.output)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_python_yaml_tags_are_refused(tmp_path):
    config = tmp_path / "evil.yaml"
    config.write_text(f"experiment: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(config)
    assert not (tmp_path / "pwned").exists()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_pickle_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": _Exploit(marker)}, path)
    with pytest.raises(ValueError, match="not a medseg-dfl checkpoint") as info:
        load_checkpoint(path)
    assert not marker.exists() and "\n" not in str(info.value) and "weights_only=False" not in str(info.value)
    assert "refused, loading them could run code" in str(info.value)
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ValueError, match="not a medseg-dfl checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- concurrent runs


def test_an_output_claimed_by_a_live_run_is_left_to_it(ckpt3d, tmp_path):
    folder = tmp_path / "in"
    _volume(folder / "a.nii.gz")
    _volume(folder / "b.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim_path(out / "a.nii.gz").write_text(f"{os.uname().nodename} {other.pid}\n")
        result = _infer(ckpt3d, folder, out)
    finally:
        other.kill()
        other.wait()
    assert result.exit_code == 0, result.output
    assert "1 written, 0 already done, 0 failed, 1 left to another run" in " ".join(result.output.split())
    assert not (out / "a.nii.gz").exists() and (out / "b.nii.gz").is_file()
    assert claim_path(out / "a.nii.gz").exists() and not claim_path(out / "b.nii.gz").exists()


def test_a_claim_of_a_dead_run_is_taken_over(ckpt3d, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim_path(out / "a.nii.gz").write_text(f"{os.uname().nodename} {dead.pid}\n")
    result = _infer(ckpt3d, _volume(tmp_path / "in" / "a.nii.gz"), out)
    assert result.exit_code == 0 and "1 written" in result.output
    assert (out / "a.nii.gz").is_file() and not claim_path(out / "a.nii.gz").exists()


def test_claims_are_exclusive(tmp_path):
    target = tmp_path / "x.png"
    script = ("import sys; from pathlib import Path; from medseg_dfl.engine.output_claims import claim_output\n"
              "with claim_output(Path(sys.argv[1])) as ours: print(ours)")  # fmt: skip
    with claim_output(target) as first:
        with claim_output(target) as second:
            pass
        other = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=True)
        assert claim_path(target).exists()  # the refused takers did not remove ours
    assert (first, second, other.stdout.strip()) == (True, False, "False")
    assert not claim_path(target).exists()  # released on exit
    after = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=True)
    assert after.stdout.strip() == "True"


# --------------------------------------------------------------------------- wrong checkpoint / wrong input


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path):
    fake = tmp_path / "notes.pt"
    fake.write_text("hello")
    result = _infer(fake, _volume(tmp_path / "in" / "a.nii.gz"), tmp_path / "out")
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert "notes.pt: not a medseg-dfl checkpoint" in line and len(result.output.strip().splitlines()) == 1


def test_2d_model_3d_input_and_the_reverse(tmp_path):
    ckpt2d = _checkpoint(tmp_path / "2d.pt", CONFIG_2D)
    ckpt3d = _checkpoint(tmp_path / "3d.pt", CONFIG_3D)
    volume = _volume(tmp_path / "in" / "vol.nii.gz")
    png = tmp_path / "in2" / "smear.png"
    png.parent.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(png)
    for ckpt, image, words in ((ckpt2d, volume, "2D model, 3D input"), (ckpt3d, png, "3D model, 2D input")):
        result = _infer(ckpt, image, tmp_path / f"out-{ckpt.stem}")
        assert result.exit_code == 1
        skipped = [line for line in result.output.splitlines() if image.name in line and "skipped" in line]
        assert len(skipped) == 1 and words in skipped[0], result.output
        assert skipped[0].count(image.name) == 1  # the path is printed once
        assert "Warning" not in result.output and "warn" not in result.output.lower()
