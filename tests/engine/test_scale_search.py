"""Searching the factor at which a single-cell model sees its object at the training size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from medseg_dfl.engine.scale_search import predict_at_object_scale


class _DarkIsCell:
    """A stand-in network: pixels darker than 0.5 are the object (class 1)."""

    transforms = Compose([])
    cfg: Any = None
    class_names = ["background", "cell"]
    cell_scale = None

    def __init__(self) -> None:
        self.sizes: list[tuple[int, ...]] = []

    def predict_probabilities(self, data: dict[str, Any]) -> np.ndarray:
        image = torch.as_tensor(data["image"])
        self.sizes.append(tuple(image.shape[-2:]))
        cell = (image[0] < 0.5).float()
        return torch.stack([1 - cell, cell]).numpy()


def _disc_image(size: int, diameter: float) -> torch.Tensor:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    dark = (yy - c) ** 2 + (xx - c) ** 2 <= (diameter / 2) ** 2
    return torch.from_numpy(np.where(dark, 0.1, 0.9).astype(np.float32))[None].repeat(3, 1, 1)


def test_search_finds_the_factor_that_brings_the_object_to_the_training_size():
    predictor = _DarkIsCell()
    result = predict_at_object_scale(predictor, _disc_image(160, 100), target=50.0)
    assert result.factor == pytest.approx(0.5, rel=0.01)
    assert result.scale.cell_diameter_px == pytest.approx(100, rel=0.01)
    assert result.scale.source == "searched (object size)"
    # 7 rungs + 2 quarter-octave neighbours, and the result is back at the input's size
    assert len(result.tried) == 9 and len(predictor.sizes) == 9
    assert tuple(result.probabilities.shape) == (2, 160, 160)
    cell = result.probabilities.argmax(0).numpy() == 1
    assert np.sqrt(4 * cell.sum() / np.pi) == pytest.approx(100, rel=0.03)


def test_a_given_object_diameter_fixes_the_factor_without_searching():
    predictor = _DarkIsCell()
    result = predict_at_object_scale(predictor, _disc_image(160, 100), target=50.0, object_diameter=80.0)
    assert result.factor == pytest.approx(50 / 80)
    assert result.scale.source == "--cell-diameter"
    assert len(predictor.sizes) == 1 and predictor.sizes[0] == (100, 100)


def test_nothing_found_at_any_size_runs_at_the_inputs_own_size():
    predictor = _DarkIsCell()
    blank = torch.full((3, 64, 64), 0.9)
    result = predict_at_object_scale(predictor, blank, target=50.0)
    assert result.factor == 1.0
    assert (result.probabilities.argmax(0) == 0).all()


class _SizeTagged(_DarkIsCell):
    """Like _DarkIsCell, but the object's probability tells the size it was seen at (0.6 + height/10^4)."""

    def predict_probabilities(self, data: dict[str, Any]) -> np.ndarray:
        image = torch.as_tensor(data["image"])
        self.sizes.append(tuple(image.shape[-2:]))
        cell = (image[0] < 0.5).float() * (0.6 + image.shape[-2] / 1e4)
        return torch.stack([1 - cell, cell]).numpy()


def test_the_result_averages_the_best_factor_and_its_quarter_octave_neighbours():
    predictor = _SizeTagged()
    result = predict_at_object_scale(predictor, _disc_image(160, 100), target=50.0)
    assert result.factor == pytest.approx(0.5, rel=0.01)
    heights = [size[0] for size in predictor.sizes]
    near = [h for h in heights if 0.5 * 2**-0.26 * 160 <= h <= 0.5 * 2**0.26 * 160]
    assert sorted(near) == [67, 80, 95]  # x0.42, x0.5, x0.59: the search ran them anyway
    centre = float(result.probabilities[1, 80, 80])
    assert centre == pytest.approx(0.6 + np.mean(near) / 1e4, abs=1e-4)
    alone = predict_at_object_scale(_SizeTagged(), _disc_image(160, 100), target=50.0, average_near=False)
    assert float(alone.probabilities[1, 80, 80]) == pytest.approx(0.6 + 80 / 1e4, abs=1e-4)
