"""K-fold cross-validation splits: deterministic, stratification-free, recorded in each run.

Fold ``k`` of ``n`` validates on every ``n``-th case (from ``k``) of the case ids sorted and then
shuffled with ``random.Random(seed)``: the same seed and case ids give the same folds on every
machine, the folds are disjoint and together cover every case once (sizes differ by at most one).
A dataset.json ``"validation"`` list is ignored in fold mode: its cases join the pool.

Each training run writes ``split.json`` (fold, folds, seed, train/val case ids), so what a model
was validated on, and which folds an ensemble combines, can be checked later.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from medseg_dfl.io.atomic import write_json

__all__ = ["SPLIT_NAME", "check_fold", "fold_case_ids", "fold_split", "split_record", "write_split"]

SPLIT_NAME = "split.json"
_Pair = TypeVar("_Pair")


def check_fold(fold: int, folds: int) -> None:
    """``ValueError`` unless ``folds >= 2`` and ``0 <= fold < folds``."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1} for {folds} folds, got {fold}")


def fold_case_ids(case_ids: Sequence[str], fold: int, folds: int, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, val ids) of fold ``fold`` of ``folds``, each in sorted order."""
    check_fold(fold, folds)
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        raise ValueError(f"case ids must be unique for a fold split ({len(case_ids) - len(ids)} duplicate(s))")
    if len(ids) < folds:
        raise ValueError(f"{folds} folds need at least {folds} cases, got {len(ids)}")
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    val = set(shuffled[fold::folds])
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def fold_split(pairs: Sequence[_Pair], fold: int, folds: int, seed: int) -> tuple[list[_Pair], list[_Pair]]:
    """(train, val) ``CasePair``s (anything with ``case_id``) of one fold, in their given order."""
    _, val_ids = fold_case_ids([str(p.case_id) for p in pairs], fold, folds, seed)
    chosen = set(val_ids)
    return [p for p in pairs if str(p.case_id) not in chosen], [p for p in pairs if str(p.case_id) in chosen]


def split_record(
    train_items: Sequence[dict], val_items: Sequence[dict], fold: int | None, folds: int | None, seed: int
) -> dict[str, Any]:
    """What ``split.json`` holds: the split's parameters and the case ids on each side."""
    return {
        "fold": fold,
        "folds": folds if fold is not None else None,
        "seed": seed,
        "train": [str(i["case_id"]) for i in train_items],
        "validation": [str(i["case_id"]) for i in val_items],
    }


def write_split(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/split.json`` (atomically); returns the path."""
    path = Path(run_dir) / SPLIT_NAME
    write_json(path, record)
    return path
