"""Segmenting a single-cell crop at the size its model was trained on, found by searching.

White-cell models (no red-cell class) record the diameter of the object they segment
(:func:`medseg_dfl.cells.object_scale.training_object_scale`). Each input is run at the coarse
ladder of factors :data:`~medseg_dfl.cells.object_scale.SEARCH_FACTORS`, then at the quarter
octaves around the best rung; the factor whose segmented object is closest to the training size
(:func:`~medseg_dfl.cells.object_scale.choose_factor`) gives the result: the mean of its
probabilities and those of the factors a quarter octave either side (which the search ran anyway),
resampled back to the input's size. The mean costs no network pass and makes the result less
dependent on the one rung chosen: on segmentation_WBC it raised Dataset 1's validation crops from
cytoplasm 0.921 / nucleus 0.956 to 0.929 / 0.962 and Dataset 2's (another lab) from 0.782 / 0.937
to 0.784 / 0.949 (docs/results/wbc_cross_lab.md). ``--cell-diameter`` (the object's diameter in
the input, px) fixes the factor instead. Resampling and prediction are :mod:`medseg_dfl.engine.rescale`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from medseg_dfl.cells.object_scale import (
    SEARCH_FACTORS,
    choose_factor,
    largest_object_diameter,
    refine_factors,
)
from medseg_dfl.cells.scale import CellScale
from medseg_dfl.engine.rescale import ScaledPredictor, predict_at_model_scale, to_model_scale

__all__ = ["ObjectScaleResult", "predict_at_object_scale"]


@dataclass
class ObjectScaleResult:
    probabilities: torch.Tensor  # (classes, H, W) at the input's size
    scale: CellScale  # the object's diameter in the input, and how it was found
    factor: float  # model diameter / input diameter
    tried: dict[float, float | None]  # factor -> object diameter at the model's scale (None: none found)


def _run(predictor: ScaledPredictor, image: torch.Tensor, factor: float, target: float) -> tuple[torch.Tensor, float | None]:
    scaled = to_model_scale(predictor.transforms, image, CellScale(target / factor, None, "search"), target)
    probs, _ = predict_at_model_scale(predictor, scaled)
    # The largest object, red cells that touch it included. Measuring the cell alone
    # (engine.postprocess.keep_core_object) was tried on segmentation_WBC Dataset 2 and chose worse
    # factors (cytoplasm 0.750 / nucleus 0.917 against 0.782 / 0.937 with the cell kept only at the end).
    diameter = largest_object_diameter(probs.argmax(dim=0).numpy())
    return probs, None if diameter is None else diameter * scaled.factor


def _near_mean(results: dict[float, tuple[torch.Tensor, float | None]], best: float) -> torch.Tensor:
    """Mean probabilities of ``best`` and the tried factors within a quarter octave of it that found
    an object (already computed by the search: no extra network pass)."""
    near = [f for f, r in results.items() if abs(math.log2(f / best)) <= 0.25 + 1e-3 and (f == best or r[1] is not None)]
    return torch.stack([results[f][0] for f in near]).mean(dim=0)


def predict_at_object_scale(
    predictor: ScaledPredictor, image: torch.Tensor, target: float, object_diameter: float | None = None,
    average_near: bool = True,
) -> ObjectScaleResult:
    """Probabilities of a raw (C, H, W) image at the factor that makes its object ``target`` px
    across: ``target / object_diameter`` when that is given, else searched (module docstring);
    ``average_near=False`` returns the chosen factor's probabilities alone."""
    if object_diameter is not None:
        factor = target / object_diameter
        probs, found = _run(predictor, image, factor, target)
        return ObjectScaleResult(probs, CellScale(float(object_diameter), None, "--cell-diameter"), factor,
                                 {factor: found})  # fmt: skip
    results: dict[float, tuple[torch.Tensor, float | None]] = {}
    for factor in SEARCH_FACTORS:
        results[factor] = _run(predictor, image, factor, target)
    best = choose_factor({f: r[1] for f, r in results.items()}, target)
    if best is None:  # nothing segmented at any size: the input's own size
        best = 1.0
    for factor in refine_factors(best, list(results)):
        results[factor] = _run(predictor, image, factor, target)
    tried = {f: r[1] for f, r in results.items()}
    best = choose_factor(tried, target) or best
    probabilities = _near_mean(results, best) if average_near else results[best][0]
    return ObjectScaleResult(probabilities, CellScale(target / best, None, "searched (object size)"), best, tried)
