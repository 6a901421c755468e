"""``train`` checks its data as ``preprocess`` does, before it builds anything.

:func:`check_training_data` runs :func:`medseg_dfl.io.checks.check_pairs` (the same checks as
``preprocess``) over every pair of ``cfg.data.root``. Results are cached by file size and
modification time, so a second run reads only the files that changed. The cache lives in

- ``<data.root>/validated.json`` for a ``preprocess`` output folder (the records it wrote),
- else ``<data.cache_dir>/validated.json`` when a cache folder is configured,
- else ``.medseg-checked.json`` beside the run folder (in its parent, never inside the run folder,
  which a bad data set must not leave behind).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from medseg_dfl.config import Config
from medseg_dfl.data.datasets import is_preprocessed
from medseg_dfl.data.folds import training_pairs
from medseg_dfl.data.preprocess import VALIDATED_NAME
from medseg_dfl.io.checks import BadFilesError, check_pairs, save_check_cache
from medseg_dfl.io.pairing import CasePair

__all__ = ["RUN_CHECK_CACHE", "check_cache_path", "check_training_data"]

RUN_CHECK_CACHE = ".medseg-checked.json"


def check_cache_path(cfg: Config, run_dir: Path) -> Path:
    """Where :func:`check_training_data` keeps its records (see the module docstring)."""
    root = Path(cfg.data.root)
    if is_preprocessed(root):
        return root / VALIDATED_NAME
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir) / VALIDATED_NAME
    return Path(run_dir).resolve().parent / RUN_CHECK_CACHE


def check_training_data(
    cfg: Config, run_dir: Path, skip_bad: bool = False, pairs: Sequence[CasePair] | None = None
) -> tuple[frozenset[str], list[tuple[Path, str]]]:
    """Validate every pair of ``cfg.data.root`` (``pairs`` when the caller has discovered them
    already): (images to leave out as resolved paths, the bad files with their reasons).

    Raises :class:`BadFilesError` listing every bad file unless ``skip_bad``; ``ValueError`` when
    ``skip_bad`` leaves no pair at all.
    """
    root = Path(cfg.data.root)
    pairs = training_pairs(cfg) if pairs is None else list(pairs)
    cache = check_cache_path(cfg, run_dir)
    result = check_pairs(pairs, cfg.data.num_classes, cfg.data.spatial_dims, in_channels=cfg.data.in_channels,
                         cache=cache)  # fmt: skip
    if result.n_read:
        # Only a cache: a folder we may not write to costs a re-read next time, nothing else.
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_check_cache(cache, result)
    if result.bad and not skip_bad:
        raise BadFilesError(result.bad, len(pairs), hint="no run folder was made (--skip-bad / skip_bad=True trains without them)")
    if not result.good:
        raise ValueError(f"{root}: no valid pairs left ({len(result.bad)} bad)")
    good = {str(Path(p.image).resolve()) for p in result.good}
    return frozenset(str(Path(p.image).resolve()) for p in pairs) - good, result.bad
