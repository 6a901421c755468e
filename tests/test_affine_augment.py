"""transforms.augment.affine_prob / rotate_degrees / scale_fraction: the strength of the random
rotation and scaling step (MONAI RandAffined), and the config's range checks."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import RandAffined

from medseg_dfl.config import Config, config_from_dict
from medseg_dfl.transforms import build_train_transforms

NO_AUGMENT = {"flip": False, "rot90": False, "affine": False, "color_jitter": False, "noise": False}


def _cfg(dims: int = 2, **augment) -> Config:
    data = {"spatial_dims": 3, "modality": "mr", "in_channels": 1, "class_names": ["bg", "a"]} if dims == 3 else {}
    patch = [16, 16, 16] if dims == 3 else [16, 16]
    return config_from_dict({"data": data, "transforms": {"patch_size": patch, "augment": {**NO_AUGMENT, **augment}}})


def _affine_steps(cfg: Config) -> list[RandAffined]:
    steps = [getattr(t, "inner", t) for t in build_train_transforms(cfg).transforms]  # unwrap without_metadata
    return [t for t in steps if isinstance(t, RandAffined)]


def test_affine_strength_follows_the_config():
    (light,) = _affine_steps(_cfg(3, affine=True))
    assert light.prob == 0.2
    assert np.allclose(light.rand_affine.rand_affine_grid.rotate_range, [np.radians(15)] * 3)
    assert np.allclose(light.rand_affine.rand_affine_grid.scale_range, [0.1] * 3)
    (strong,) = _affine_steps(_cfg(3, affine=True, affine_prob=0.36, rotate_degrees=30, scale_fraction=0.3))
    assert strong.prob == 0.36
    assert np.allclose(strong.rand_affine.rand_affine_grid.rotate_range, [np.radians(30)] * 3)
    assert np.allclose(strong.rand_affine.rand_affine_grid.scale_range, [0.3] * 3)
    (flat,) = _affine_steps(_cfg(2, affine=True, rotate_degrees=30))
    assert np.isclose(flat.rand_affine.rand_affine_grid.rotate_range[0], np.radians(30))  # 2D: one plane
    assert _affine_steps(_cfg(3, affine=True, affine_prob=0.0)) == []
    assert _affine_steps(_cfg(3, affine=False, affine_prob=0.9)) == []


@pytest.mark.parametrize("key, value", [("affine_prob", 1.5), ("rotate_degrees", -1), ("scale_fraction", 1.0)])
def test_affine_strength_out_of_range_is_refused(key, value):
    with pytest.raises(ValueError, match=f"transforms.augment.{key}"):
        _cfg(2, **{key: value})
