"""Helpers of the bundle tests: repository paths, validation folders, bundle runs in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import medseg_dfl.bundle.export
import medseg_dfl.engine.inference

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data"
SHIPPED = REPO / "bundles" / "blood_smear_dfl"


def validation_images(dataset: Path, into: Path) -> Path:
    """A folder of symlinks to the validation images of ``dataset`` (its dataset.json split)."""
    into.mkdir(parents=True, exist_ok=True)
    for item in json.loads((dataset / "dataset.json").read_text())["validation"]:
        source = dataset / item["image"]
        os.symlink(source, into / source.name)
    return into


def run_bundle(config_file: Path | list[Path], **override) -> None:
    """``monai.bundle.run`` in this process (what ``python -m monai.bundle run`` calls)."""
    import monai.bundle

    files = [str(f) for f in config_file] if isinstance(config_file, list) else str(config_file)
    monai.bundle.run(config_file=files, logging_file=False, **override)


def read_label_map(path: Path) -> np.ndarray:
    from medseg_dfl.io.readers import load_image

    return np.asarray(load_image(path))


SPEC_FIELDS = ("version", "changelog", "monai_version", "pytorch_version", "numpy_version",
               "required_packages_version", "task", "description", "authors", "copyright", "network_data_format")  # fmt: skip
IO_FIELDS = ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data", "channel_def")


def check_metadata(meta: dict, class_names: list[str], in_channels: int, spatial_dims: int) -> None:
    """The bundle specification's metadata fields, with values that fit the network."""
    missing = [k for k in SPEC_FIELDS if k not in meta]
    assert not missing, f"metadata lacks {missing}"
    assert meta["version"] in meta["changelog"]
    for key in ("monai_version", "pytorch_version", "numpy_version"):
        assert meta[key][0].isdigit(), (key, meta[key])
    assert "medseg-dfl" in meta["required_packages_version"]
    image = meta["network_data_format"]["inputs"]["image"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    for item in (image, pred):
        assert not [k for k in IO_FIELDS if k not in item]
        assert len(item["spatial_shape"]) == spatial_dims and item["dtype"] == "float32"
    assert image["num_channels"] == in_channels and len(image["channel_def"]) == in_channels
    assert pred["num_channels"] == len(class_names)
    assert pred["channel_def"] == {str(i): name for i, name in enumerate(class_names)}
    assert meta["medseg_dfl"]["class_names"] == class_names
    assert "target_spacing" in meta["medseg_dfl"]["scale"]


class EdgeInteriorNet(torch.nn.Module):
    """A hand-built scale-dependent smear network (no weights; as in tests/engine/test_infer_rescale.py):
    (B, 3, H, W) RGB in [0, 1] -> logits of background / interior (1) / edge (2) / nothing (3). A
    stained pixel is class 1 where a 9 x 9 window around it is all stained, else class 2, so an
    image seen at another magnification gives another mask. Bundle configs build it as
    ``bundle_helpers.EdgeInteriorNet``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stained = torch.sigmoid((0.84 - x.mean(1, keepdim=True)) * 40)
        interior = -F.max_pool2d(-stained, 9, stride=1, padding=4)
        scores = [1 - stained, stained * interior, stained * (1 - interior), torch.zeros_like(stained)]
        return 20 * torch.cat(scores, 1)


def use_hand_built_network(monkeypatch, network_class: type[torch.nn.Module]) -> None:
    """Both ``infer`` and ``export-bundle`` build ``network_class`` (no weights): a network whose
    output is known by hand, so the bundle's masks can be compared with ``infer``'s exactly."""
    monkeypatch.setattr(medseg_dfl.engine.inference, "build_network", lambda cfg: network_class())
    monkeypatch.setattr(medseg_dfl.bundle.export, "network_spec", lambda cfg: (network_class, {}))

