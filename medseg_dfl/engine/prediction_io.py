"""File side of batch inference: which inputs, which outputs, what is already done, and writing.

Output naming (``medseg_dfl.io.writers.output_name``): ``<stem><suffix><family extension>`` for the
mask, ``<stem>_probabilities<ext>`` for probability maps and ``<stem>_overlay.png`` for overlays.
Inputs found under a folder keep their sub-folder below ``output_dir``, so equal stems in different
folders never collide. Inputs from an nnU-Net raw dataset's ``imagesTs``/``imagesTr``
(``CASE_0000.nii.gz``, the first of a case's channel files) give ``CASE<suffix>.nii.gz``, as nnU-Net
names its predictions (``{case}{file_ending}``), so nnU-Net's own evaluation and viewers pick them up. Outputs that exist are never replaced without ``overwrite``; every file is
written under a temporary name and renamed (``medseg_dfl.io.writers.atomic_path``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from medseg_dfl.io.errors import DataError
from medseg_dfl.io.geometry import ImageGeometry
from medseg_dfl.io.names import OVERLAY_SUFFIX, PROBABILITIES_SUFFIX, file_stem
from medseg_dfl.io.nnunet import nnunet_case_id, nnunet_images_dataset
from medseg_dfl.io.readers import load_image
from medseg_dfl.io.writers import output_name, write_mask_like, write_probabilities_like
from medseg_dfl.visualize.overlays import save_overlay

__all__ = [
    "OutputPlan",
    "check_distinct_outputs",
    "failure_reason",
    "plan_outputs",
    "shard_for_rank",
    "write_outputs",
]

T = TypeVar("T")


@dataclass(frozen=True)
class OutputPlan:
    """Where the outputs of one input file go (None = not requested)."""

    source: Path
    mask: Path
    probabilities: Path | None = None
    overlay: Path | None = None

    def requested(self) -> list[Path]:
        return [p for p in (self.mask, self.probabilities, self.overlay) if p is not None]

    def pending(self, overwrite: bool) -> list[Path]:
        """The requested outputs still to write (all of them with ``overwrite``)."""
        return [p for p in self.requested() if overwrite or not p.exists()]


def _relative_parent(path: Path, input_root: Path) -> Path:
    if input_root.is_dir():
        try:
            return path.parent.relative_to(input_root)
        except ValueError:
            return Path()
    return Path()


def plan_outputs(
    files: Sequence[Path],
    input_root: Path,
    output_dir: Path,
    *,
    suffix: str = "",
    probabilities: bool = False,
    overlay: bool = False,
) -> list[OutputPlan]:
    """One :class:`OutputPlan` per input. ``ValueError`` when two inputs (or an input and an output)
    would share a file name, before anything is written."""
    check_name_part(suffix, "--suffix")
    plans: list[OutputPlan] = []
    owners: dict[Path, Path] = {}
    sources = {Path(os.path.abspath(f)) for f in files}
    root = Path(os.path.abspath(output_dir))
    file_ending = _nnunet_file_ending(input_root)
    for source in files:
        folder = output_dir / _relative_parent(source, input_root)
        case = nnunet_case_id(source, file_ending) if file_ending else None
        probs_name = output_name(source, PROBABILITIES_SUFFIX, probabilities=True) if probabilities else None
        mask_name = output_name(source, suffix)
        if case is not None:  # nnU-Net: CASE_0000.nii.gz -> CASE.nii.gz
            stem = file_stem(source)
            mask_name = case + mask_name[len(stem):]
            probs_name = case + probs_name[len(stem):] if probs_name else None
        plan = OutputPlan(
            source=source,
            mask=folder / mask_name,
            probabilities=folder / probs_name if probs_name else None,
            overlay=folder / f"{case or file_stem(source)}{OVERLAY_SUFFIX}.png" if overlay else None,
        )
        for out in plan.requested():
            key = Path(os.path.abspath(out))
            if not key.is_relative_to(root):  # names come from flags and input names: never outside
                raise ValueError(f"output {out} would lie outside the output folder {output_dir}")
            if key in sources:
                raise ValueError(f"output {out} would overwrite the input {key}; choose another output folder or --suffix")
            if key in owners:
                raise ValueError(f"{source} and {owners[key]} would both be written to {out}")
            owners[key] = source
        plans.append(plan)
    return plans


def check_distinct_outputs(files: Sequence[Path], output_dir: Path, pattern: str) -> None:
    """``ValueError`` (as :func:`plan_outputs`) when two inputs would write the same file of ``output_dir``:
    ``pattern`` is an output's name with ``{stem}`` for each input's :func:`file_stem` (``count``
    writes ``{stem}_cells.png``, so ``a.png`` and ``a.jpg`` would share one)."""
    owners: dict[str, Path] = {}
    for source in files:
        stem = file_stem(source)
        if stem in owners:
            raise ValueError(f"{source} and {owners[stem]} would both be written to "
                             f"{output_dir / pattern.format(stem=stem)}; rename one of them")  # fmt: skip
        owners[stem] = source


def _nnunet_file_ending(input_root: Path) -> str | None:
    """The ``file_ending`` when ``input_root`` is (a file in) an nnU-Net raw ``imagesTs``/``imagesTr``."""
    dataset = nnunet_images_dataset(input_root)  # refuses regions
    return dataset.file_ending if dataset is not None else None


def check_name_part(value: str, what: str) -> None:
    """``ValueError`` unless ``value`` can only be part of one file name (no folder separators, no
    ``..``), so an output named with it stays in its folder."""
    if any(bad in value for bad in ("/", "\\", "..", "\0")):
        raise ValueError(f"{what} {value!r} must be part of a file name: no '/', '\\', '..' or NUL")


def shard_for_rank(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share: every ``world_size``-th item starting at ``rank`` (sorted input -> stable)."""
    return list(items[rank::world_size])


def failure_reason(err: BaseException) -> str:
    """One line for a failed file: the reason of a ``DataError`` in the chain, else the innermost cause
    (MONAI wraps errors as "applying transform ...", which says nothing about the file)."""
    chain = [err]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and cause not in chain:
        chain.append(cause)
    data_errors = [e for e in chain if isinstance(e, DataError)]
    if data_errors:
        best = data_errors[0]
        text = best.reason if best.path is not None else str(best)
    else:
        best = chain[-1]
        text = str(best).strip().splitlines()[0] if str(best).strip() else type(best).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def write_outputs(
    plan: OutputPlan,
    mask: np.ndarray,
    probabilities: np.ndarray | None,
    class_names: Sequence[str],
    geometry: ImageGeometry,
    *,
    image: Any = None,
    overwrite: bool,
) -> list[Path]:
    """Write the pending outputs of ``plan`` (mask last, so a finished mask means a finished case).

    ``geometry``: the source's, taken when it was loaded (no writer reads the source again);
    ``image``: the source as loaded (C, spatial...), for the overlay (read again only when None).
    """
    pending = set(plan.pending(overwrite))
    written: list[Path] = []
    if plan.probabilities in pending and probabilities is not None:
        written.append(write_probabilities_like(probabilities, geometry, plan.probabilities, overwrite=overwrite))
    if plan.overlay in pending:
        written.append(_write_overlay(plan, mask, class_names, geometry, image, overwrite=overwrite))
    if plan.mask in pending:
        written.append(write_mask_like(mask, geometry, plan.mask, num_classes=len(class_names), overwrite=overwrite))
    return written


def _write_overlay(plan: OutputPlan, mask: np.ndarray, class_names: Sequence[str], geometry: ImageGeometry,
                   image: Any, *, overwrite: bool) -> Path:  # fmt: skip
    assert plan.overlay is not None  # only called for a requested overlay
    if image is None:
        image = load_image(plan.source)  # the original intensities, in the mask's spatial order
    pixels = np.asarray(image.as_tensor() if hasattr(image, "as_tensor") else image)
    spacing = geometry.pixel_spacing
    if mask.ndim == 2 and geometry.family != "2d":
        # a 2D NIfTI/ITK file is (x, y) like its volumes; overlays take 2D arrays rows first
        pixels, mask, spacing = pixels.swapaxes(1, 2), mask.T, spacing[::-1]
    return save_overlay(
        pixels, mask, class_names, plan.overlay, spacing=spacing, title=plan.source.name, overwrite=overwrite
    )
