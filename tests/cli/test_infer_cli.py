"""`medseg-dfl infer`: folder in, masks out; bad files named, exit code 1; no overwrite by surprise."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint

runner = CliRunner()
CONFIG = {
    "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["background", "organ", "lesion"]},
    "transforms": {"patch_size": [16, 16, 16]},
    "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
}
AFFINE = np.array([[0.0, -1.2, 0.0, 5.0], [0.9, 0.0, 0.0, -3.0], [0.0, 0.0, 2.5, 1.0], [0.0, 0.0, 0.0, 1.0]])


def checkpoint(tmp_path):
    import torch

    from medseg_dfl.networks import build_network

    cfg = config_from_dict(CONFIG)
    torch.manual_seed(0)
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(
        format_version=1, model_state=build_network(cfg).state_dict(), config=config_to_dict(cfg),
        class_names=cfg.data.class_names,
    )  # fmt: skip
    return save_checkpoint(tmp_path / "best.pt", payload)


def inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    volume = np.full((18, 16, 8), -1000, np.int16)
    volume[4:12, 3:10, 2:6] = 200
    nib.save(nib.Nifti1Image(volume, AFFINE), folder / "a.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"\x00" * 10)
    nib.save(nib.Nifti1Image(volume[::-1].copy(), AFFINE), folder / "sub" / "c.nii")
    return folder


def test_folder_with_corrupt_file_writes_the_others_and_exits_1(tmp_path):
    ckpt, folder, out = checkpoint(tmp_path), inputs(tmp_path), tmp_path / "out"
    result = runner.invoke(app, ["infer", str(ckpt), str(folder), str(out), "--recursive", "--suffix", "_seg"])
    assert result.exit_code == 1, result.output
    assert "broken.nii.gz" in result.output and "cannot read image" in result.output
    assert "2 written, 0 already done, 1 failed" in result.output and "Traceback" not in result.output
    assert (out / "a_seg.nii.gz").is_file() and (out / "sub" / "c_seg.nii.gz").is_file()
    assert nib.load(out / "sub" / "c_seg.nii.gz").shape == (18, 16, 8)
    np.testing.assert_allclose(nib.load(out / "a_seg.nii.gz").affine, AFFINE)


def test_rerun_skips_done_files_and_overwrite_replaces_them(tmp_path):
    ckpt, folder, out = checkpoint(tmp_path), inputs(tmp_path), tmp_path / "out"
    (folder / "broken.nii.gz").unlink()
    first = runner.invoke(app, ["infer", str(ckpt), str(folder / "a.nii.gz"), str(out), "--overlay"])
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "a_overlay.png"]
    stamp = (out / "a.nii.gz").stat().st_mtime_ns
    again = runner.invoke(app, ["infer", str(ckpt), str(folder), str(out), "--overlay"])
    assert again.exit_code == 0 and "0 written, 1 already done, 0 failed" in again.output
    assert (out / "a.nii.gz").stat().st_mtime_ns == stamp
    forced = runner.invoke(app, ["infer", str(ckpt), str(folder), str(out), "--overwrite", "--tile-overlap", "0.5"])
    assert forced.exit_code == 0 and "1 written" in forced.output
    assert (out / "a.nii.gz").stat().st_mtime_ns != stamp


def test_missing_checkpoint_is_one_red_line(tmp_path):
    folder = inputs(tmp_path)
    result = runner.invoke(app, ["infer", str(tmp_path / "nope.pt"), str(folder), str(tmp_path / "out")])
    assert result.exit_code == 1 and "checkpoint not found" in result.output and "Traceback" not in result.output
