"""What a run writes besides checkpoints: metrics.csv and train.log (progress is reported through
``medseg_dfl.progress``; the CLI draws it)."""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

from medseg_dfl.io.atomic import write_text

__all__ = [
    "close_run_log",
    "metrics_columns",
    "open_run_log",
    "read_metrics_rows",
    "write_metrics",
]


def metrics_columns(class_names: list[str]) -> list[str]:
    """``epoch,train_loss,val_loss,dice_<class>...,iou_<class>...,mean_fg_dice,lr,seconds``."""
    return [
        "epoch", "train_loss", "val_loss",
        *[f"dice_{c}" for c in class_names], *[f"iou_{c}" for c in class_names],
        "mean_fg_dice", "lr", "seconds",
    ]  # fmt: skip


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)  # repr: exact round trip of the float
    return str(value)


def write_metrics(path: Path, rows: list[dict[str, Any]], class_names: list[str]) -> None:
    """Rewrite ``metrics.csv`` with ``rows`` atomically (NaN, e.g. no validation that epoch, is empty)."""
    columns = metrics_columns(class_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c, math.nan)) for c in columns])
    write_text(path, buffer.getvalue())


def read_metrics_rows(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """Rows of an existing ``metrics.csv`` with ``epoch <= up_to_epoch`` (a resumed run drops rows
    written after the checkpoint it resumes from)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {k: float(v) if v else math.nan for k, v in raw.items()}
            row["epoch"] = int(row["epoch"])
            if row["epoch"] <= up_to_epoch:
                rows.append(row)
    return rows


def open_run_log(run_dir: Path) -> logging.Logger:
    """A logger writing one line per epoch to ``RUN_DIR/train.log`` (appending on resume)."""
    logger = logging.getLogger(f"medseg_dfl.train.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def close_run_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
