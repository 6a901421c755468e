"""The sliding window of an exported bundle, mirrored as ``medseg-dfl infer`` mirrors.

``infer``'s test-time augmentation (``InferenceOptions.tta``) runs an
:class:`~medseg_dfl.engine.ensemble.AveragedProbabilities` of the network inside the sliding window:
each window's mean softmax over the flips of the axes training flipped, returned as its log.
:class:`MirroredSlidingWindowInferer` does the same to the network MONAI's evaluator hands it, so
the bundle's ``network_def``, ``network`` and the ``CheckpointLoader`` that fills it stay MONAI's
plain model-zoo keys (the weights load into the network itself, not into a wrapper whose keys
differ). With ``tta`` off (or nothing to mirror) it is MONAI's ``SlidingWindowInferer`` untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer
from monai.utils import str2bool

from medseg_dfl.engine.ensemble import AveragedProbabilities

__all__ = ["MirroredSlidingWindowInferer", "parse_switch"]


def parse_switch(value: Any, name: str) -> bool:
    """``value`` as a bool (MONAI's ``str2bool`` words: true/false, yes/no, t/f, y/n, 1/0).
    ``python -m monai.bundle run --tta false`` hands the config the string "false" (fire reads only
    ``False`` as a bool), which Python would take as true; ``--tta 0`` hands it the int 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    try:
        return str2bool(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"{name} must be true or false, got {value!r}") from None


def _checked_flips(flips: Sequence[Sequence[int]], spatial_dims: int) -> list[tuple[int, ...]]:
    """Flips as tuples of tensor axes of a (B, C, spatial...) window: each within 2..spatial_dims + 1."""
    checked = [tuple(axes) for axes in flips]
    if not checked:
        raise ValueError("flips must hold at least one entry ([] = no flip)")
    valid = range(2, 2 + spatial_dims)
    for axes in checked:
        if len(set(axes)) != len(axes) or not all(isinstance(a, int) and a in valid for a in axes):
            raise ValueError(f"flips entry {list(axes)} must be distinct tensor axes in {valid.start}..{valid.stop - 1} "
                             f"of a (B, C, spatial...) window ({spatial_dims}D roi_size)")  # fmt: skip
    return checked


class MirroredSlidingWindowInferer(SlidingWindowInferer):
    """MONAI's ``SlidingWindowInferer`` (same arguments) whose network, with ``tta`` on, is
    ``AveragedProbabilities([network], flips)``: each window's mean softmax over ``flips`` (tuples of
    tensor axes, ``()`` = as it is), as its log, so the softmax after stitching gives the mean back
    as in ``infer``. ``tta`` off, or ``flips`` only ``[()]``: the network's own logits, as ``infer``
    (``engine.inference.load_predictor``) runs them then."""

    def __init__(self, roi_size: Sequence[int], *args: Any, flips: Sequence[Sequence[int]] = ((),),
                 tta: bool | str = False, **kwargs: Any) -> None:  # fmt: skip
        if not isinstance(roi_size, Sequence):  # the flips' axes are checked against its length
            raise ValueError(f"roi_size must give one size per spatial axis, got {roi_size!r}")
        super().__init__(roi_size, *args, **kwargs)
        self.flips = _checked_flips(flips, len(roi_size))
        self.tta = parse_switch(tta, "tta")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.tta and self.flips != [()]:
            network = AveragedProbabilities([network], self.flips)
        return super().__call__(inputs, network, *args, **kwargs)
