"""Tiny data folders built in tmp_path: multi-channel volumes, Decathlon two-modality, RGB, instance masks.

A plain module (not conftest.py) so tests import it by a name no other test folder uses."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "datasets"
HIPPOCAMPUS = SHARED / "Task04_Hippocampus"


def _blob_volume(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Label map with a box of class 1 and a smaller box of class 2 inside it."""
    label = np.zeros(shape, dtype=np.uint8)
    lo = [int(rng.integers(2, s // 3)) for s in shape]
    label[tuple(slice(a, a + s // 2) for a, s in zip(lo, shape, strict=True))] = 1
    label[tuple(slice(a + 2, a + 2 + s // 5) for a, s in zip(lo, shape, strict=True))] = 2
    return label


def _volume_channels(rng: np.random.Generator, label: np.ndarray, channels: int) -> np.ndarray:
    """(X, Y, Z, C) MR-like intensities: each channel sees the classes with its own contrast and scale."""
    out = []
    for c in range(channels):
        contrast = np.array([100.0, 300.0, 500.0]) if c % 2 == 0 else np.array([50.0, 20.0, 80.0])
        out.append(contrast[label] * (1 + c) + rng.normal(0, 10, label.shape))
    return np.stack(out, axis=-1).astype(np.float32)


def write_volumes(root: Path, *, n: int = 5, channels: int = 2, shape=(20, 24, 16), spacing=(1.0, 1.0, 2.0),
                  decathlon_modalities: list[str] | None = None, seed: int = 0) -> Path:
    """images/ + labels/ (or, with ``decathlon_modalities``, imagesTr/ + labelsTr/ + dataset.json)."""
    rng = np.random.default_rng(seed)
    images, labels = ("imagesTr", "labelsTr") if decathlon_modalities else ("images", "labels")
    (root / images).mkdir(parents=True)
    (root / labels).mkdir()
    affine = np.diag([*spacing, 1.0])
    entries = []
    for i in range(n):
        label = _blob_volume(rng, shape)
        image = _volume_channels(rng, label, channels)
        if channels == 1:
            image = image[..., 0]
        nib.save(nib.Nifti1Image(image, affine), root / images / f"case_{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / labels / f"case_{i:03d}.nii.gz")
        entries.append({"image": f"./{images}/case_{i:03d}.nii.gz", "label": f"./{labels}/case_{i:03d}.nii.gz"})
    if decathlon_modalities:
        data = {"name": "two", "tensorImageSize": "4D", "modality": dict(enumerate(decathlon_modalities)),
                "labels": {"0": "background", "1": "gland", "2": "core"}, "numTraining": n, "training": entries}
        (root / "dataset.json").write_text(json.dumps({**data, "modality": {str(k): v for k, v in data["modality"].items()}}))
    return root


def write_rgb(root: Path, *, n: int = 6, size: int = 40, names=("background", "cytoplasm", "nucleus"),
              seed: int = 0) -> Path:
    """WBC-like: RGB PNG images with a cell (cytoplasm ring around a nucleus), labels 0/1/2, dataset.json names."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        r = np.hypot(yy - cy, xx - cx)
        label = np.where(r < size / 8, 2, np.where(r < size / 4, 1, 0)).astype(np.uint8)
        colours = np.array([[230, 200, 200], [200, 150, 200], [90, 40, 140]])
        image = np.clip(colours[label] + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(label).save(root / "labels" / f"{i:03d}.png")
    labels = {str(k): v for k, v in enumerate(names)}
    (root / "dataset.json").write_text(json.dumps({
        "name": "wbc-like", "modality": {"0": "microscopy"}, "labels": labels,
        "training": [{"image": f"images/{i:03d}.png", "label": f"labels/{i:03d}.png"} for i in range(n)],
    }))
    return root


def write_instances(root: Path, *, n: int = 3, size: int = 64, cells: int = 20, seed: int = 0) -> Path:
    """Cellpose style: grey images with ``cells`` discs numbered 1..cells in each mask."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), dtype=np.uint16)
        centres = [(y, x) for y in range(6, size - 4, 13) for x in range(6, size - 4, 13)]
        for value, (cy, cx) in enumerate(centres[:cells], start=1):
            mask[np.hypot(yy - cy, xx - cx) < 4] = value
        image = (60 + 120 * (mask > 0) + rng.normal(0, 5, mask.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / f"img{i}.png")
        Image.fromarray(mask).save(root / f"img{i}_masks.png")
    return root
