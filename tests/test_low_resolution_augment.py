"""transforms.augment.low_resolution: nnU-Net's low-resolution simulation and gamma, image only, off by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, Randomizable, RandSimulateLowResolutiond
from PIL import Image

from medseg_dfl.config import Config, config_from_dict
from medseg_dfl.transforms import build_train_transforms

NO_AUGMENT = {"flip": False, "rot90": False, "affine": False, "color_jitter": False, "noise": False}


@pytest.fixture
def smear(tmp_path) -> dict[str, str]:
    """40x48 RGB PNG of noise (down- and upsampling changes it everywhere) with a label of two classes."""
    rng = np.random.default_rng(0)
    image = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    label = np.zeros((40, 48), np.uint8)
    label[2:20, 3:30] = 1
    label[25:32, 30:40] = 2
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(label).save(tmp_path / "lab.png")
    return {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")}


def _cfg(low_resolution: bool, dims: int = 2, **augment) -> Config:
    data = {"spatial_dims": 3, "modality": "mr", "in_channels": 1, "class_names": ["bg", "a"]} if dims == 3 else {}
    patch = [16, 16, 16] if dims == 3 else [16, 16]
    return config_from_dict({"data": data, "transforms": {
        "patch_size": patch, "num_samples": 2, "augment": {**NO_AUGMENT, **augment, "low_resolution": low_resolution}}})  # fmt: skip


def _steps(cfg: Config) -> list:
    return [getattr(t, "inner", t) for t in build_train_transforms(cfg).transforms]  # unwrap without_metadata


def _draws(pipeline: Compose, item: dict, count: int) -> list[dict]:
    """``count`` draws of the random part (seeded 0) from one run of the deterministic prefix."""
    first = pipeline.get_index_of_first(lambda t: isinstance(t, Randomizable))
    loaded = Compose(pipeline.transforms[:first])(dict(item))
    random_part = Compose(pipeline.transforms[first:])
    random_part.set_random_state(0)
    patches = []
    for _ in range(count):
        patches += random_part({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in loaded.items()})
    return patches


def test_off_by_default_and_absent_when_off():
    assert Config().transforms.augment.low_resolution is False
    names = [type(t).__name__ for t in _steps(_cfg(False))]
    assert "RandSimulateLowResolutiond" not in names and "RandAdjustContrastd" not in names
    on = _steps(_cfg(True))
    low = [t for t in on if isinstance(t, RandSimulateLowResolutiond)]
    assert len(low) == 1 and low[0].prob == 0.25 and tuple(low[0].zoom_range) == (0.5, 1.0)
    assert low[0].keys == ("image",) and low[0].upsample_mode == "bilinear"  # 2D: MONAI's trilinear would fail
    gammas = sorted((t.prob, t.adjuster.invert_image) for t in on if type(t).__name__ == "RandAdjustContrastd")
    assert gammas == [(0.1, True), (0.3, False)]  # nnU-Net's inverted and plain gamma
    # color_jitter already draws the plain gamma: not twice.
    with_jitter = _steps(_cfg(True, color_jitter=True))
    assert sorted(t.prob for t in with_jitter if type(t).__name__ == "RandAdjustContrastd") == [0.1, 0.3]


def test_changes_the_image_never_the_label(smear):
    on, off = _draws(build_train_transforms(_cfg(True)), smear, 20), _draws(build_train_transforms(_cfg(False)), smear, 20)
    assert len(on) == len(off) == 40
    # The same crops (the new steps draw after them): labels identical, images differ in some draws only.
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(on, off, strict=True))
    changed = [not torch.allclose(a["image"], b["image"]) for a, b in zip(on, off, strict=True)]
    assert 0 < sum(changed) < len(changed)
    assert all(p["image"].shape == (3, 16, 16) and p["image"].dtype == torch.float32 for p in on)


@pytest.mark.parametrize("dims", [2, 3])
def test_low_resolution_step_blurs_the_image_only(dims):
    step = next(t for t in _steps(_cfg(True, dims)) if isinstance(t, RandSimulateLowResolutiond))
    step.set_random_state(0)
    step.prob = 1.0
    step.sim_lowres_tfm.zoom_range = (0.5, 0.5)  # the strongest zoom of nnU-Net's range, every time
    gen = torch.Generator().manual_seed(0)
    shape = (1, *[16] * dims)
    image, label = torch.randn(shape, generator=gen), torch.randint(0, 2, shape, generator=gen)
    out = step({"image": image.clone(), "label": label.clone()})
    assert out["image"].shape == shape and torch.equal(out["label"], label)
    # Down- then upsampled white noise loses high frequencies: neighbours become alike.
    assert not torch.allclose(out["image"], image)
    assert out["image"].diff(dim=1).abs().mean() < 0.8 * image.diff(dim=1).abs().mean()
