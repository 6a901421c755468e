"""Fixtures of the bundle tests: short training runs with our own trainer (session-scoped)."""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads spin and steal the cores of the working ones (see medseg_dfl.cli.main).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
from bundle_helpers import REPO, SAMPLE


def _train(tmp_root: Path, config: str, overrides: list[str]) -> Path:
    from medseg_dfl.config import load_config
    from medseg_dfl.engine.training import train

    run_dir = tmp_root / Path(config).stem
    cfg = load_config(REPO / "configs" / config, overrides)
    train(cfg, run_dir, device="cpu")
    return run_dir


@pytest.fixture(scope="session")
def smear_run(tmp_path_factory) -> Path:
    """A 2D run of configs/blood_smear_2d.yaml trained for one short epoch (validated, so best.pt)."""
    overrides = [f"data.root={SAMPLE / 'blood_smear'}", "train.epochs=1", "train.steps_per_epoch=2", "train.val_every=1"]
    return _train(tmp_path_factory.mktemp("runs"), "blood_smear_2d.yaml", overrides)


@pytest.fixture(scope="session")
def volume_run(tmp_path_factory) -> Path:
    """A 3D run of configs/volume_3d.yaml (CT window, RAS, foreground crop, resampling), one short epoch."""
    overrides = [f"data.root={SAMPLE / 'volumes'}", "train.epochs=1", "train.steps_per_epoch=1", "train.val_every=1"]
    return _train(tmp_path_factory.mktemp("runs"), "volume_3d.yaml", overrides)
