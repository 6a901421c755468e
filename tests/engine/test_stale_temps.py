"""A re-run or --resume removes the temporary files a killed run left in its output folder (and
leaves those of a writer that is still running)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from medseg_dfl.config import config_from_dict
from medseg_dfl.data.preprocess import preprocess_dataset
from medseg_dfl.data.synthetic import generate_sample_data
from medseg_dfl.engine.inference import predict_folder
from medseg_dfl.engine.training import train


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / n for n in names]
    for path in paths:
        path.write_bytes(b"half")
    return paths


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("smears")
    generate_sample_data(root, "blood-smear", count=4, size=40, seed=0)
    return root


def _cfg(root: Path, epochs: int = 1):
    return config_from_dict({
        "data": {"root": str(root), "cache": "memory"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "train": {"epochs": epochs, "batch_size": 2},
    })  # fmt: skip


def test_resume_and_infer_rerun_remove_stale_temps_of_dead_runs_only(smears, tmp_path):
    run = tmp_path / "run"
    train(_cfg(smears), run, progress=None)
    dead, live = _dead_pid(), os.getppid()
    stale = _plant(run, [f".last.tmp-{dead}-0123abcd.pt", f".best.tmp-{dead}-89abcdef.pt", f".best.pt.{dead}.tmp"])
    running = _plant(run, [f".last.tmp-{live}-0123abcd.pt"])
    train(_cfg(smears, epochs=2), run, resume=True, progress=None)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in running)

    out = tmp_path / "masks"
    stale = _plant(out / "sub", [f".smear_000.tmp-{dead}-0123abcd.png"])
    running = _plant(out, [f".smear_001.tmp-{live}-0123abcd.png"])
    summary = predict_folder(run / "last.pt", smears / "images", out)
    assert len(summary.written) == 4
    assert not any(p.exists() for p in stale) and all(p.exists() for p in running)


def test_preprocess_rerun_removes_stale_temps_of_dead_runs_only(tmp_path):
    raw = tmp_path / "raw"
    for folder in ("images", "labels"):
        (raw / folder).mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 20, 30)).save(raw / "images" / f"s{i}.png")
        Image.new("L", (16, 16), 1).save(raw / "labels" / f"s{i}.png")
    cfg = config_from_dict({"transforms": {"patch_size": [16, 16]}, "data": {"val_fraction": 0.34}})
    out = tmp_path / "out"
    dead, live = _dead_pid(), os.getppid()
    stale = _plant(out, [f".dataset.tmp-{dead}-0123abcd.json", f".fingerprint.tmp-{dead}-0123abcd.json"])
    running = _plant(out, [f".dataset.tmp-{live}-0123abcd.json"])
    preprocess_dataset(raw, out, cfg, progress=None)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in running)
    assert (out / "dataset.json").is_file()
