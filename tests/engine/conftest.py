"""Shared fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
from medseg_dfl.networks import build_network


@pytest.fixture
def write_smear_checkpoint() -> Callable[..., Path]:
    """``write(path, **payload)``: an untrained 2D smear checkpoint (UNet 4-8, 25 px red cells)."""

    def write(path: Path, **payload_values) -> Path:
        cfg = config_from_dict({
            "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3,
                     "class_names": list(SMEAR_CLASSES)},
            "transforms": {"patch_size": [32, 32]},
            "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        })  # fmt: skip
        torch.manual_seed(0)
        payload = dict.fromkeys(PAYLOAD_KEYS)
        payload.update(format_version=1, model_state=build_network(cfg).state_dict(), config=config_to_dict(cfg),
                       class_names=list(SMEAR_CLASSES), scale={"cell_diameter_px": 25.0, "source": "test"})  # fmt: skip
        payload.update(payload_values)
        return save_checkpoint(path, payload)

    return write
