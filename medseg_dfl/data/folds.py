"""The training split of a config, computed once; k-fold cross-validation splits.

:func:`training_split` is the one answer to "which cases train and which validate this config":
with ``data.all_cases``, every case trains and none validates (nnU-Net's fold "all"); with
``data.fold`` set, fold ``data.fold`` of ``data.folds`` (below); otherwise the dataset.json
``"validation"`` list (a ``preprocess`` output folder has one), else a seeded ``data.val_fraction``
split (:func:`medseg_dfl.io.pairing.split_pairs`). ``train`` computes it once and hands it to the
datasets, ``split.json`` and the red-cell scale it records; ``compare`` and ``demo`` ask it too.
:func:`with_fold` puts ``--fold``/``--folds`` into a typed config, :func:`with_all_cases` ``--all-cases``.

K-fold splits are deterministic and stratification-free.

Fold ``k`` of ``n`` validates on every ``n``-th case (from ``k``) of the case ids sorted and then
shuffled with ``random.Random(seed)``: the same seed and case ids give the same folds on every
machine, the folds are disjoint and together cover every case once (sizes differ by at most one).
A dataset.json ``"validation"`` list is ignored in fold mode: its cases join the pool.

Each training run writes ``split.json`` (fold, folds, all_cases, seed, train/val case ids), so what a model
was validated on, and which folds an ensemble combines, can be checked later.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from medseg_dfl.config import Config, check_all_cases
from medseg_dfl.io.atomic import write_json
from medseg_dfl.io.pairing import CasePair, discover_pairs, split_pairs

__all__ = [
    "SPLIT_NAME",
    "Split",
    "check_fold",
    "fold_case_ids",
    "fold_split",
    "training_pairs",
    "training_split",
    "with_all_cases",
    "with_fold",
    "write_split",
]

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


@dataclass(frozen=True)
class Split:
    """Which cases train and which validate a run (pairs in discovery order)."""

    train_pairs: tuple[CasePair, ...]
    val_pairs: tuple[CasePair, ...]
    fold: int | None  # None: the dataset.json list / val_fraction split
    folds: int | None  # None unless fold is set
    seed: int
    all_cases: bool = False  # data.all_cases: every case trains, val_pairs is empty

    def record(self) -> dict[str, Any]:
        """What ``split.json`` holds: the split's parameters and the case ids on each side."""
        return {
            "fold": self.fold,
            "folds": self.folds,
            "all_cases": self.all_cases,
            "seed": self.seed,
            "train": [str(p.case_id) for p in self.train_pairs],
            "validation": [str(p.case_id) for p in self.val_pairs],
        }


def training_pairs(cfg: Config) -> list[CasePair]:
    """Every image/label pair of ``cfg.data.root`` (raw folder or ``preprocess`` output)."""
    root = Path(cfg.data.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root is not a folder: {root}")
    return discover_pairs(root)


def training_split(cfg: Config, skip: Collection[str] = (), pairs: Sequence[CasePair] | None = None) -> Split:
    """The split of ``cfg`` (see the module docstring) of ``pairs`` (default: :func:`training_pairs`),
    leaving out the pairs whose image is in ``skip`` (resolved paths, e.g. files that failed the
    input check). ``ValueError`` for an unlabelled image or when no training case is left."""
    root = Path(cfg.data.root)
    pairs = training_pairs(cfg) if pairs is None else pairs
    pairs = [p for p in pairs if str(Path(p.image).resolve()) not in skip]
    unlabelled = [str(p.image) for p in pairs if p.label is None]
    if unlabelled:
        raise ValueError(f"{root}: {len(unlabelled)} image(s) have no label, e.g. {unlabelled[0]}")
    fold, seed = cfg.data.fold, cfg.experiment.seed
    if cfg.data.all_cases:  # the dataset.json list and the val_fraction share train too
        train, val = list(pairs), []
    elif fold is not None:
        train, val = fold_split(pairs, fold, cfg.data.folds, seed)
    else:
        train, val = split_pairs(root, pairs, cfg.data.val_fraction, seed)
    if not train:
        raise ValueError(f"{root}: no training cases after the train/validation split")
    return Split(tuple(train), tuple(val), fold, cfg.data.folds if fold is not None else None, seed, cfg.data.all_cases)


def with_fold(cfg: Config, fold: int | None = None, folds: int | None = None) -> Config:
    """``cfg`` with ``data.fold`` / ``data.folds`` replaced where given (``train --fold/--folds``);
    ``ValueError`` for a fold outside ``0..folds-1``."""
    data = cfg.data
    data = dataclasses.replace(data, fold=data.fold if fold is None else fold,
                               folds=data.folds if folds is None else folds)  # fmt: skip
    if data.fold is not None:
        check_fold(data.fold, data.folds)
    check_all_cases(data)
    return dataclasses.replace(cfg, data=data)


def with_all_cases(cfg: Config) -> Config:
    """``cfg`` with ``data.all_cases`` on (``train --all-cases``); ``ValueError`` naming both keys
    when ``data.fold`` is set."""
    data = dataclasses.replace(cfg.data, all_cases=True)
    check_all_cases(data)
    return dataclasses.replace(cfg, data=data)


def write_split(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/split.json`` (atomically); returns the path."""
    path = Path(run_dir) / SPLIT_NAME
    write_json(path, record)
    return path
