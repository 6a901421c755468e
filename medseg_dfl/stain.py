"""Stain robustness for RGB microscopy: augmentation in optical-density (HED) space, and stain shifts.

Training (``transforms.augment.stain: true``): before the per-image intensity normalisation,
:func:`stain_augmentations` perturbs each whole image the way another lab's scanner and stain would:

- :class:`RandHEDStaind`: RGB -> haematoxylin/eosin/DAB optical densities (``skimage.color.rgb2hed``),
  each channel scaled by ``U(1 - sigma, 1 + sigma)`` and shifted by ``U(-bias, bias)``, back to RGB
  (``hed2rgb``) -- the augmentation of Tellez et al. (2018), stronger than their "light" setting;
- brightness (global scale), contrast (gamma), Gaussian blur (focus), scale jitter (zoom, image and
  label together).

:func:`with_stain_augmentation` inserts them into a pipeline in front of its first intensity
normalisation (which then sees the perturbed image: per-image z-score removes what it can).

Evaluation (``benchmarks/stain_shift.py``): :func:`hed_shift`, :func:`reinhard_transfer` (colour
transfer to a target palette in CIE-Lab, Reinhard et al. 2001) and :func:`lab_statistics` make
validation images look like another lab's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    MapTransform,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandGaussianSmoothd,
    RandomizableTransform,
    RandScaleIntensityd,
    RandZoomd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Transform,
)
from skimage.color import hed2rgb, lab2rgb, rgb2hed, rgb2lab

__all__ = [
    "RandHEDStaind",
    "hed_shift",
    "lab_statistics",
    "reinhard_transfer",
    "stain_augmentations",
    "with_stain_augmentation",
]

_NORMALISERS = (NormalizeIntensityd, ScaleIntensityRanged, ScaleIntensityRangePercentilesd)


def _to_unit_hwc(image: np.ndarray) -> tuple[np.ndarray, float]:
    """(3,H,W) RGB in [0, 255] or [0, 1] -> (H,W,3) in [0, 1], and the scale to undo it."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"stain transforms need a 3-channel RGB image (3, H, W), got shape {tuple(image.shape)}")
    scale = 255.0 if float(image.max()) > 1.5 else 1.0
    return np.clip(np.moveaxis(image, 0, -1) / scale, 0.0, 1.0), scale


def hed_shift(image: np.ndarray, factors: Sequence[float], biases: Sequence[float]) -> np.ndarray:
    """RGB (3,H,W) with each HED optical density ``d`` replaced by ``d * factor + bias``; same range/dtype."""
    rgb, scale = _to_unit_hwc(np.asarray(image, dtype=np.float64))
    hed = rgb2hed(rgb)
    hed = hed * np.asarray(factors, dtype=np.float64) + np.asarray(biases, dtype=np.float64)
    out = np.clip(hed2rgb(hed), 0.0, 1.0)
    return (np.moveaxis(out, -1, 0) * scale).astype(np.asarray(image).dtype, copy=False)


def lab_statistics(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the CIE-Lab channels over RGB images (H,W,3 uint8 or [0,1])."""
    pixels = []
    for image in images:
        rgb = np.asarray(image, dtype=np.float64)
        rgb = rgb / 255.0 if rgb.max() > 1.5 else rgb
        pixels.append(rgb2lab(rgb[..., :3]).reshape(-1, 3))
    stacked = np.concatenate(pixels)
    return stacked.mean(0), stacked.std(0)


def reinhard_transfer(image: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    """RGB (H,W,3) uint8 recoloured so its Lab mean/std become the target's (Reinhard colour transfer)."""
    rgb = np.asarray(image, dtype=np.float64) / 255.0
    lab = rgb2lab(rgb)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    lab = (lab - mean) / np.maximum(std, 1e-6) * np.asarray(target_std) + np.asarray(target_mean)
    return (np.clip(lab2rgb(lab), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class RandHEDStaind(RandomizableTransform, MapTransform):
    """Random HED stain jitter of RGB images (3,H,W), whole image, before normalisation."""

    def __init__(
        self, keys: KeysCollection, prob: float = 0.8, sigma: float = 0.25, bias: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:  # fmt: skip
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= sigma < 1.0 or bias < 0.0:
            raise ValueError(f"HED jitter needs 0 <= sigma < 1 and bias >= 0, got sigma={sigma}, bias={bias}")
        self.sigma, self.bias = float(sigma), float(bias)
        self._factors = np.ones(3)
        self._biases = np.zeros(3)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._factors = self.R.uniform(1.0 - self.sigma, 1.0 + self.sigma, size=3)
        self._biases = self.R.uniform(-self.bias, self.bias, size=3)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            image = d[key]
            array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            shifted = hed_shift(array.astype(np.float32), self._factors, self._biases)
            if isinstance(image, torch.Tensor):
                out = image.clone()
                out.copy_(torch.from_numpy(shifted))
                d[key] = out
            else:
                d[key] = shifted
        return d


def stain_augmentations(image_key: str = "image", label_key: str = "label", sigma: float = 0.25) -> list[Transform]:
    """HED jitter (each optical density scaled by ``U(1 - sigma, 1 + sigma)``), brightness, gamma, blur and
    scale jitter (image and label), in that order."""
    keys = [image_key, label_key]
    return [
        RandHEDStaind(keys=image_key, prob=0.8, sigma=sigma, bias=0.05),
        RandScaleIntensityd(keys=image_key, factors=0.15, prob=0.5),  # brightness, all channels alike
        RandAdjustContrastd(keys=image_key, prob=0.3, gamma=(0.7, 1.5)),
        RandGaussianSmoothd(keys=image_key, prob=0.3, sigma_x=(0.25, 1.5), sigma_y=(0.25, 1.5)),
        RandZoomd(
            keys=keys, prob=0.6, min_zoom=0.6, max_zoom=1.4, mode=("bilinear", "nearest"), keep_size=True,
            padding_mode="edge",
        ),  # fmt: skip
    ]


def with_stain_augmentation(
    steps: Sequence[Transform], image_key: str = "image", label_key: str = "label", sigma: float = 0.25,
) -> list:  # fmt: skip
    """``steps`` with :func:`stain_augmentations` inserted before the first intensity normaliser."""
    steps = list(steps)
    position = next((i for i, t in enumerate(steps) if isinstance(t, _NORMALISERS)), None)
    if position is None:
        raise ValueError("stain augmentation needs an intensity normalisation step to insert itself before")
    return steps[:position] + stain_augmentations(image_key, label_key, sigma) + steps[position:]
