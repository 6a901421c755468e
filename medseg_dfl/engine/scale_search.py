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
the input, px) fixes the factor instead.

A folder of crops from one lab shares one magnification, while its white cells differ in size by
type (a small lymphocyte, a large monocyte): searched one by one, each is made as large as the
training median, and a small cell is enlarged past what the model saw of its kind. ``infer`` by
default searches every input (:func:`searched_object_diameter`), then runs them all at the median
diameter (:func:`folder_object_diameter`): on segmentation_WBC Dataset 2 (another lab) cytoplasm
0.784 -> 0.814 and nucleus 0.949 -> 0.965, Dataset 1's validation crops unchanged or better
(docs/results/wbc_cross_lab.md). Resampling and prediction are :mod:`medseg_dfl.engine.rescale`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg_dfl.cells.object_scale import (
    SEARCH_FACTORS,
    choose_factor,
    largest_object_diameter,
    refine_factors,
)
from medseg_dfl.cells.scale import CellScale
from medseg_dfl.engine.inference_folder import prefetch
from medseg_dfl.engine.rescale import ScaledPredictor, predict_at_model_scale, to_model_scale
from medseg_dfl.progress import ProgressCallback, report

__all__ = [
    "ObjectScaleResult",
    "at_folder_scale",
    "folder_object_diameter",
    "predict_at_object_scale",
    "searched_object_diameter",
]


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


def _search(predictor: ScaledPredictor, image: torch.Tensor,
            target: float) -> tuple[float, dict[float, tuple[torch.Tensor, float | None]]]:  # fmt: skip
    """The coarse ladder, then the quarter octaves around its best rung: (best factor, every result)."""
    results: dict[float, tuple[torch.Tensor, float | None]] = {}
    for factor in SEARCH_FACTORS:
        results[factor] = _run(predictor, image, factor, target)
    best = choose_factor({f: r[1] for f, r in results.items()}, target)
    if best is None:  # nothing segmented at any size: the input's own size
        best = 1.0
    for factor in refine_factors(best, list(results)):
        results[factor] = _run(predictor, image, factor, target)
    return choose_factor({f: r[1] for f, r in results.items()}, target) or best, results


def searched_object_diameter(predictor: ScaledPredictor, image: torch.Tensor, target: float) -> float | None:
    """The object's diameter in a raw (C, H, W) image (px), from the search; None when the network
    segmented nothing at any factor."""
    best, results = _search(predictor, image, target)
    return None if all(found is None for _, found in results.values()) else target / best


def folder_object_diameter(diameters: Iterable[float | None]) -> float | None:
    """One diameter for inputs that share a magnification: the median of those found (None: none)."""
    found = [d for d in diameters if d is not None]
    return float(statistics.median(found)) if found else None


def predict_at_object_scale(
    predictor: ScaledPredictor, image: torch.Tensor, target: float, object_diameter: float | None = None,
    average_near: bool = True, source: str = "--cell-diameter",
) -> ObjectScaleResult:
    """Probabilities of a raw (C, H, W) image at the factor that makes its object ``target`` px
    across: ``target / object_diameter`` when that is given (``source`` says where it came from;
    run at that factor only), else searched (module docstring); ``average_near=False`` returns the
    searched factor's probabilities alone."""
    if object_diameter is not None:
        factor = target / object_diameter
        probs, found = _run(predictor, image, factor, target)
        return ObjectScaleResult(probs, CellScale(float(object_diameter), None, source), factor, {factor: found})
    best, results = _search(predictor, image, target)
    tried = {f: r[1] for f, r in results.items()}
    probabilities = _near_mean(results, best) if average_near else results[best][0]
    return ObjectScaleResult(probabilities, CellScale(target / best, None, "searched (object size)"), best, tried)


def at_folder_scale(predictor: ScaledPredictor, read: Callable[[Path], Any], inputs: Sequence[Path],
                    skip: tuple[type[BaseException], ...], progress: ProgressCallback | None = None) -> Callable[[Path], Any]:  # fmt: skip
    """``read`` with every input's object diameter set to the median of the searched ones (all of
    the input folder's files, not only those still to do: a resumed run or another rank gets the same
    diameter); files that raise ``skip`` are left out here and reported by the pass that writes."""
    if len(inputs) < 2:  # one input: its own search is the folder's
        return read
    diameters = []
    for done, (item, loading) in enumerate(prefetch(read, [_Source(p) for p in inputs]), start=1):
        try:
            loaded = loading.result()
            diameters.append(searched_object_diameter(predictor, loaded.image, loaded.target))
        except skip:
            pass
        report(progress, done, len(inputs), f"scale search: {item.source.name}")
    diameter = folder_object_diameter(diameters)
    if diameter is None:
        return read
    source = f"the median of {sum(d is not None for d in diameters)} inputs searched"
    return functools.partial(_with_diameter, read, diameter, source)


@dataclass(frozen=True)
class _Source:
    source: Path  # an input file, as prefetch reads it (inference_folder.HasSource)


def _with_diameter(read: Callable[[Path], Any], diameter: float, source: str, path: Path) -> Any:
    return dataclasses.replace(read(path), object_diameter=diameter, diameter_source=source)
