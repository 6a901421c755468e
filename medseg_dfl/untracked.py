"""Run the random (per-draw) part of a training pipeline without MONAI's metadata tracking.

With tracking on, every MONAI transform copies the metadata dict, updates the affine and records
itself in ``applied_operations``; on 128x128 training patches that bookkeeping costs about as much
as the pixel work (the random suffix of the 2D smear pipeline took ~2x the CPU time with it, see
docs/benchmarks.md). Training never inverts those transforms, so the per-draw steps run with
``monai.data.set_track_meta(False)`` and produce plain tensors; the cached deterministic prefix,
the validation and the inference pipelines (``Invertd`` needs the metadata) are untouched.

The switch is MONAI's process-wide flag, so it is set only for the duration of each wrapped call
and restored afterwards (also on error). A pipeline that must keep metadata and runs *at the same
time in another thread* of the same process could see it off for that moment; data-loader worker
processes each have their own flag. Training's prefetch thread (``medseg_dfl/data/prefetch.py``)
runs these steps while the main thread runs the training step, which handles plain tensors only;
validation and inference start after that thread has stopped.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.data import get_track_meta, set_track_meta
from monai.transforms import Randomizable, RandomizableTrait, Transform

__all__ = ["without_metadata"]

NAME_KEY = "case_id"  # the source file, kept as a plain string (error messages name the batch's files)


class _Untracked(Transform):
    """Calls ``inner`` with metadata tracking off; the first one records the file name."""

    def __init__(self, inner: Transform, name_from: Hashable | None = None) -> None:
        self.inner = inner
        self.name_from = name_from

    def __call__(self, data: Any) -> Any:
        if self.name_from is not None and isinstance(data, Mapping) and NAME_KEY not in data:
            name = getattr(data.get(self.name_from), "meta", {}).get("filename_or_obj")
            if name is not None:
                data = {**data, NAME_KEY: str(name)}
        previous = get_track_meta()
        set_track_meta(False)
        try:
            return self.inner(data)
        finally:
            set_track_meta(previous)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class _RandomUntracked(_Untracked, Randomizable):
    """A random transform, untracked; seeding goes straight to it, so the random streams (and so
    the crops and augmentations) are the same as those of the unwrapped pipeline."""

    def set_random_state(self, seed: int | None = None, state: Any = None) -> _RandomUntracked:
        self.inner.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: Any) -> None:  # the inner transform draws its own numbers
        pass


class _TraitUntracked(_Untracked, RandomizableTrait):
    """Random but seeded elsewhere (a RandomizableTrait only): still marks where caching stops."""


def without_metadata(steps: Sequence[Transform], name_from: Hashable | None = "image") -> list[Transform]:
    """``steps`` with everything from the first random transform on run untracked.

    The deterministic steps before it stay as they are (MONAI's caching datasets keep their output);
    ``name_from``: the key whose ``filename_or_obj`` is copied to a ``"case_id"`` string.
    """
    steps = list(steps)
    first = next((i for i, t in enumerate(steps) if isinstance(t, RandomizableTrait)), len(steps))
    wrapped: list[Transform] = []
    for index, step in enumerate(steps[first:]):
        if isinstance(step, Randomizable):
            wrapper: type[_Untracked] = _RandomUntracked
        else:
            wrapper = _TraitUntracked if isinstance(step, RandomizableTrait) else _Untracked
        wrapped.append(wrapper(step, name_from if index == 0 else None))
    return steps[:first] + wrapped

