"""Test-time augmentation (mirroring) and model ensembles, as one network for the sliding window.

:class:`AveragedProbabilities` wraps one or more networks. For a window it returns
``log(mean over models and flips of softmax(network(flip(x))) flipped back)``. It is passed as the
``predictor`` of MONAI's ``sliding_window_inference``, so the flips happen window by window and
memory stays that of one window batch (times the flips run one after another, not at once). The
callers take a softmax of the stitched output: for a single window that gives back the mean
probabilities exactly; with overlapping windows the Gaussian blend acts on log-probabilities.

Flips: all ``2**d`` combinations of the spatial axes (nnU-Net's mirroring; 8 in 3D, 4 in 2D).
:func:`tta_flips` gives those of the axes a checkpoint's training flipped and
:func:`mirrors_by_default` whether ``infer`` mirrors a model unasked; ``infer`` and the exported
MONAI bundles both read them, so they mirror alike.

:func:`resolve_checkpoints` turns the ``infer`` arguments into checkpoint files: a file is itself;
a run folder is its ``best.pt``; a folder of fold runs is each sub-folder's ``best.pt``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from medseg_dfl.config import Config
from medseg_dfl.engine.rescale import ModelScale

__all__ = [
    "AveragedProbabilities",
    "check_same_preprocessing",
    "flip_combinations",
    "mirrors_by_default",
    "resolve_checkpoints",
    "tta_flips",
]

BEST_NAME = "best.pt"
_TINY = 1e-12


def flip_combinations(spatial_dims: int, spatial_axes: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Every subset of ``spatial_axes`` (0-based spatial axes; None = all) as tensor axes of a
    B,C,spatial tensor (``()`` = no flip), smallest first."""
    axes = [2 + a for a in (range(spatial_dims) if spatial_axes is None else sorted(spatial_axes))]
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def tta_flips(cfg: Config) -> list[tuple[int, ...]]:
    """The flips test-time augmentation averages for ``cfg``'s model: every combination of the axes
    training flipped (``transforms.augment.flip_axes``), only ``()`` when it did not flip. A model
    that never saw an axis flipped gets it wrong, so no other axis is mirrored."""
    augment = cfg.transforms.augment
    return flip_combinations(cfg.data.spatial_dims, augment.flip_axes if augment.flip else [])


def mirrors_by_default(model_scale: ModelScale | None) -> bool:
    """Whether ``infer`` mirrors a model unasked (``InferenceOptions.tta`` None): a single-cell model
    (recorded scale kind "object"), where it held another lab's cytoplasm; not smears or volumes."""
    return model_scale is not None and model_scale.kind == "object"


class AveragedProbabilities(nn.Module):
    """Mean softmax of ``networks`` over ``flips`` (tuples of tensor axes), returned as its log."""

    def __init__(self, networks: Sequence[nn.Module], flips: Sequence[tuple[int, ...]] = ((),)) -> None:
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        if not flips:
            raise ValueError("flips must hold at least one entry (() = no flip)")
        self.networks = nn.ModuleList(networks)
        self.flips = [tuple(f) for f in flips]

    @staticmethod
    def _probs(network: nn.Module, axes: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(network(torch.flip(x, axes) if axes else x).float(), dim=1)
        return torch.flip(probs, axes) if axes else probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runs = [(network, axes) for network in self.networks for axes in self.flips]
        total = self._probs(*runs[0], x)
        for network, axes in runs[1:]:
            total.add_(self._probs(network, axes, x))
        return total.div_(len(runs)).clamp_(min=_TINY).log_().to(x.dtype)


def _best_of(folder: Path) -> Path | None:
    candidate = folder / BEST_NAME
    return candidate if candidate.is_file() else None


def resolve_checkpoints(paths: Sequence[str | Path]) -> list[Path]:
    """Checkpoint files for ``paths`` (files, run folders, or folders of fold runs), in order."""
    if not paths:
        raise ValueError("no checkpoint given")
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            own = _best_of(path)
            runs = [] if own else [b for b in (_best_of(sub) for sub in sorted(path.iterdir()) if sub.is_dir()) if b]
            if not own and not runs:
                raise FileNotFoundError(f"checkpoint folder has no {BEST_NAME} and no run folders with one: {path}")
            found += [own] if own else runs
        else:
            raise FileNotFoundError(f"checkpoint not found: {path}")
    return found


def _preprocessing(cfg: Config) -> tuple:
    data = cfg.data
    return (data.spatial_dims, data.modality, data.in_channels, tuple(data.class_names), repr(cfg.transforms))


def check_same_preprocessing(configs: Sequence[Config], paths: Sequence[str | Path]) -> None:
    """``ValueError`` unless every checkpoint preprocesses alike and predicts the same classes
    (their probabilities could not be averaged otherwise); folds may differ."""
    reference = _preprocessing(configs[0])
    for cfg, path in zip(configs[1:], paths[1:], strict=True):
        if _preprocessing(cfg) != reference:
            raise ValueError(
                f"{path}: its data/transforms config differs from {paths[0]}'s; an ensemble needs the same "
                f"preprocessing and classes"
            )
