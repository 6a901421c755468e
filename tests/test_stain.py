"""Stain augmentation (HED jitter etc.) and stain shifts used to test robustness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensityd
from PIL import Image
from skimage.color import rgb2lab

from medseg_dfl.config import config_from_dict
from medseg_dfl.stain import (
    RandHEDStaind,
    hed_shift,
    lab_statistics,
    reinhard_transfer,
    with_stain_augmentation,
)
from medseg_dfl.transforms import build_train_transforms


def _smear(seed: int = 0) -> np.ndarray:
    """(H,W,3) uint8: pale pink background, a purple 'nucleus' disc."""
    rng = np.random.default_rng(seed)
    image = np.empty((32, 32, 3), dtype=np.uint8)
    image[:] = (230, 200, 210)
    yy, xx = np.mgrid[:32, :32]
    image[(yy - 16) ** 2 + (xx - 14) ** 2 < 60] = (110, 60, 160)
    return np.clip(image.astype(int) + rng.integers(-5, 6, image.shape), 0, 255).astype(np.uint8)


def test_hed_shift_identity_and_more_haematoxylin_darkens_the_nucleus():
    chw = np.moveaxis(_smear(), -1, 0).astype(np.float32)
    same = hed_shift(chw, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert same.shape == chw.shape and same.dtype == np.float32
    assert np.abs(same - chw).max() < 1.0  # the HED round trip is (numerically) lossless
    darker = hed_shift(chw, (1.6, 1.0, 1.0), (0.0, 0.0, 0.0))
    nucleus = (slice(None), 16, 14)
    assert darker[nucleus].sum() < chw[nucleus].sum() - 30


def test_reinhard_transfer_matches_target_lab_statistics():
    target_mean, target_std = np.array([60.0, 20.0, -10.0]), np.array([12.0, 6.0, 5.0])
    out = reinhard_transfer(_smear(), target_mean, target_std)
    lab = rgb2lab(out / 255.0).reshape(-1, 3)
    np.testing.assert_allclose(lab.mean(0), target_mean, atol=1.5)
    mean, std = lab_statistics([out])
    np.testing.assert_allclose(mean, lab.mean(0), atol=1e-6)


def test_rand_hed_stain_is_seeded_and_respects_probability():
    image = torch.from_numpy(np.moveaxis(_smear(), -1, 0).astype(np.float32))
    t1 = RandHEDStaind(keys="image", prob=1.0)
    t1.set_random_state(3)
    t2 = RandHEDStaind(keys="image", prob=1.0)
    t2.set_random_state(3)
    a, b = t1({"image": image})["image"], t2({"image": image})["image"]
    torch.testing.assert_close(a, b)
    assert (a - image).abs().max() > 2.0
    never = RandHEDStaind(keys="image", prob=0.0)
    assert torch.equal(never({"image": image})["image"], image)
    with pytest.raises(ValueError, match="3-channel"):
        t1({"image": image[:1]})


def test_stain_steps_go_before_the_normalisation(tmp_path):
    steps = with_stain_augmentation([NormalizeIntensityd(keys="image")])
    assert isinstance(steps[0], RandHEDStaind) and isinstance(steps[-1], NormalizeIntensityd)
    for i in range(2):
        Image.fromarray(_smear(i)).save(tmp_path / f"c{i}.png")
        Image.fromarray((np.moveaxis(_smear(i), -1, 0)[2] < 180).astype(np.uint8)).save(tmp_path / f"c{i}_masks.png")
    cfg = config_from_dict({
        "data": {"root": str(tmp_path), "class_names": ["bg", "nucleus"]},
        "transforms": {"patch_size": [16, 16], "augment": {"stain": True}},
    })  # fmt: skip
    pipeline = build_train_transforms(cfg)
    assert next(t for t in pipeline.transforms if isinstance(t, RandHEDStaind)).sigma == 0.25  # the default
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names.index("RandHEDStaind") < names.index("NormalizeIntensityd")
    pipeline.set_random_state(0)
    patches = pipeline({"image": str(tmp_path / "c0.png"), "label": str(tmp_path / "c0_masks.png")})
    assert patches[0]["image"].shape == (3, 16, 16)
    assert abs(float(patches[0]["image"].mean())) < 1.0  # z-scored after the jitter


def test_stain_augmentation_needs_rgb_2d():
    with pytest.raises(ValueError, match="augment.stain"):
        config_from_dict({"data": {"in_channels": 1}, "transforms": {"augment": {"stain": True}}})


def test_stain_sigma_sets_the_jitter_range_and_is_range_checked():
    cfg = config_from_dict({"data": {"root": "x", "class_names": ["bg", "nucleus"]},
                            "transforms": {"patch_size": [16, 16], "augment": {"stain": True, "stain_sigma": 0.5}}})
    jitter = next(t for t in build_train_transforms(cfg).transforms if isinstance(t, RandHEDStaind))
    assert jitter.sigma == 0.5
    jitter.set_random_state(0)
    factors = []
    for _ in range(200):
        jitter.randomize()
        factors.append(jitter._factors)
    factors = np.array(factors)
    assert factors.min() < 0.6 and factors.max() > 1.4 and 0.5 <= factors.min() and factors.max() <= 1.5
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="stain_sigma"):
            config_from_dict({"transforms": {"augment": {"stain_sigma": bad}}})
