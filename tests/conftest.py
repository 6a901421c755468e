"""Fixtures shared by the test folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint

WBC_CLASSES = ["background", "cytoplasm", "nucleus"]


@pytest.fixture
def write_wbc_checkpoint() -> Callable[..., Path]:
    """``write(path, scale, model_state, class_names=WBC_CLASSES, augment=None)``: a 2D RGB checkpoint
    (/255, UNet 4-8 config; a white-cell model by default) whose network the test replaces
    (monkeypatched ``build_network``), with the given scale entry (and ``transforms.augment`` keys:
    the flips training used, which ``infer`` and bundles mirror)."""

    def write(path: Path, scale: dict, model_state: dict, class_names: list[str] = WBC_CLASSES,
              augment: dict | None = None) -> Path:  # fmt: skip
        cfg = config_from_dict({
            "data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3, "class_names": class_names},
            "transforms": {"patch_size": [64, 64], "intensity": "rgb_0_1", "augment": dict(augment or {})},
            "network": {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        })  # fmt: skip
        payload = dict.fromkeys(PAYLOAD_KEYS)
        payload.update(format_version=1, model_state=model_state, config=config_to_dict(cfg),
                       class_names=class_names, scale=scale)  # fmt: skip
        return save_checkpoint(path, payload)

    return write
