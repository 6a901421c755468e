"""The folder side of :func:`medseg_dfl.engine.inference.predict_folder`: which inputs a run finds,
which of them this rank still has to segment, and reading the next one while the current one is on
the network; :class:`InferenceSummary` is what the run reports.

Nothing here touches a network or a checkpoint, so this sits below ``inference.py``, which
re-exports :class:`InferenceSummary` (its public home for callers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from medseg_dfl.engine.prediction_io import OutputPlan, plan_outputs, shard_for_rank
from medseg_dfl.engine.rescale import ModelScale
from medseg_dfl.io.nnunet import nnunet_case_inputs
from medseg_dfl.io.pairing import find_images

__all__ = ["HasSource", "InferenceSummary", "find_inputs", "pending_plans", "prefetch"]


@dataclass
class InferenceSummary:
    written: list[Path] = field(default_factory=list)  # inputs whose outputs were written
    skipped_existing: list[Path] = field(default_factory=list)  # inputs whose outputs all existed
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)
    claimed_elsewhere: list[Path] = field(default_factory=list)  # inputs another live run is doing
    rank: int = 0
    world_size: int = 1
    model_scale: ModelScale | None = None  # what inputs were rescaled to (None: not rescaled)
    scales: dict[Path, dict[str, Any]] = field(default_factory=dict)  # written input -> CellScale.record

    @property
    def ok(self) -> bool:
        return not self.failed


def find_inputs(input_path: Path, recursive: bool) -> list[Path]:
    # an nnU-Net case of several channel files is one input, its _0000 file
    return nnunet_case_inputs(input_path, sorted(find_images(input_path, recursive=recursive)))


def pending_plans(
    input_path: Path,
    output_dir: Path,
    summary: InferenceSummary,
    *,
    recursive: bool,
    suffix: str,
    probabilities: bool,
    overlay: bool,
    overwrite: bool,
) -> list[OutputPlan]:
    """The plans of ``summary``'s rank whose outputs are still to write; the others go to
    ``summary.skipped_existing``. Every input is planned before sharding, so two inputs that would
    write the same file are refused on every rank, not only on the rank that holds both."""
    all_plans = plan_outputs(
        find_inputs(input_path, recursive),
        input_path,
        output_dir,
        suffix=suffix,
        probabilities=probabilities,
        overlay=overlay,
    )
    plans = []
    for plan in shard_for_rank(all_plans, summary.rank, summary.world_size):
        if plan.pending(overwrite):
            plans.append(plan)
        else:
            summary.skipped_existing.append(plan.source)
    return plans


class HasSource(Protocol):
    source: Path  # the input file (an OutputPlan's, or a bare input's)


SourceT = TypeVar("SourceT", bound=HasSource)


def prefetch(read: Callable[[Path], Any], plans: Sequence[SourceT]) -> Iterator[tuple[SourceT, Future]]:
    """Yield (plan, future of ``read(plan.source)``), keeping the next file loading in the background."""
    if not plans:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-load") as pool:
        pending = pool.submit(read, plans[0].source)
        for index, plan in enumerate(plans):
            current = pending
            if index + 1 < len(plans):
                pending = pool.submit(read, plans[index + 1].source)
            yield plan, current
