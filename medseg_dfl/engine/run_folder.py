"""Opening a run folder for ``train``: a fresh run is refused where one already exists; a resumed
one's ``last.pt`` and ``config.yaml`` are checked against the config given, and where the run stood
(metrics rows, best score) is restored from them. Rank 0 decides; every rank gets its answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medseg_dfl.config import Config, config_from_dict, config_to_dict
from medseg_dfl.data.folds import Split
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.distributed import DistContext, broadcast_object
from medseg_dfl.engine.records import read_metrics_rows
from medseg_dfl.io.yaml_safe import load_yaml_text

__all__ = ["RESUME_MAY_CHANGE", "RunState", "resume_state", "shared_run_dir"]

# Config keys a resumed run may change (they do not change what the checkpoint means).
RESUME_MAY_CHANGE = {"train.epochs", "train.device", "train.compile", "data.num_workers", "data.prefetch", "data.cache", "data.cache_dir",
                     "inference.sw_batch_size"}  # fmt: skip


@dataclass
class RunState:
    """Where the run stands: metrics rows so far and the best validation score."""

    rows: list[dict[str, Any]]
    epoch: int = 0  # completed epochs
    best_metric: float = -math.inf
    best_epoch: int | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # bad files left out (skip_bad)
    split: Split | None = None


def _check_resume_config(cfg: Config, payload: dict[str, Any], run_dir: Path) -> None:
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            is_section = isinstance(v, dict) and k != "kwargs"
            out.update(flat(v, f"{prefix}{k}.") if is_section else {f"{prefix}{k}": v})
        return out

    saved = flat(config_to_dict(config_from_dict(payload["config"])))
    given = flat(config_to_dict(cfg))
    changed = sorted(k for k in saved.keys() | given.keys() if saved.get(k) != given.get(k))
    changed = [k for k in changed if k not in RESUME_MAY_CHANGE]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {given.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume {run_dir}: the config differs from its last.pt in {details}")


def _check_run_config_unedited(run_dir: Path, payload: dict[str, Any]) -> None:
    """``ValueError`` when RUN_DIR/config.yaml no longer says what the run trained with (last.pt's
    config): resume would silently overwrite the edit with the CONFIG given on the command line."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    saved = yaml.safe_load(yaml.safe_dump(config_to_dict(config_from_dict(payload["config"])), sort_keys=False))
    try:
        current = load_yaml_text(path.read_text())
    except ValueError:
        current = None
    if current != saved:
        raise ValueError(f"{path} was edited after the run's last checkpoint; --resume uses the CONFIG given (checked "
                         "against last.pt), not this file, and would overwrite it: undo the edit, or pass the "
                         "changes as CONFIG / --set (train.epochs may change)")  # fmt: skip


def _open_run_dir(cfg: Config, run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """Rank 0's check of RUN_DIR: the checkpoint to resume from, or None for a fresh run."""
    last = run_dir / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: {last} does not exist (nothing to resume)")
        payload = load_checkpoint(last)
        _check_resume_config(cfg, payload, run_dir)
        _check_run_config_unedited(run_dir, payload)
        return payload
    if last.exists():
        raise FileExistsError(f"{run_dir} already holds a run ({last.name}); pass --resume to continue it "
                              "or choose another output directory")  # fmt: skip
    return None


def shared_run_dir(cfg: Config, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any] | None:
    """:func:`_open_run_dir` on rank 0; its answer (or error) on every rank."""
    answer: tuple[BaseException | None, dict[str, Any] | None] = (None, None)
    if ctx.is_main:
        try:
            answer = (None, _open_run_dir(cfg, run_dir, resume))
        except (FileExistsError, FileNotFoundError, ValueError) as err:
            answer = (err, None)
    error, payload = broadcast_object(answer, ctx)
    if error is not None:
        raise error
    return payload


def resume_state(run_dir: Path, payload: dict[str, Any] | None) -> RunState:
    """Where the run stood at ``payload`` (last.pt): metrics.csv's rows up to its epoch (newer ones
    are from a run killed before it saved last.pt) and its best score; a fresh state without one."""
    if payload is None:
        return RunState(rows=[])
    epoch = int(payload["epoch"])
    rows = read_metrics_rows(run_dir / "metrics.csv", up_to_epoch=epoch)
    best = payload["best_metric"]
    best_row = next((r for r in rows if r["mean_fg_dice"] == best), None)
    return RunState(rows, epoch, best, best_row["epoch"] if best_row else None)
