"""Training curves: train/val loss and per-class validation Dice over epochs (``curves.png``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from medseg_dfl.io.atomic import save_figure

__all__ = ["plot_training_curves"]


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and values of ``key``, skipping epochs without a value (no validation that epoch)."""
    points = [(int(r["epoch"]), float(r[key])) for r in rows if not math.isnan(float(r.get(key, math.nan)))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(rows: Sequence[dict[str, Any]], class_names: Sequence[str], out_path: Path) -> Path:
    """Two panels from metrics rows: losses, and validation Dice per class (+ mean foreground)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_dice = fig.subplots(1, 2)
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
        epochs, values = _series(rows, key)
        ax_loss.plot(epochs, values, marker="o", markersize=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for name in class_names:
        epochs, values = _series(rows, f"dice_{name}")
        ax_dice.plot(epochs, values, marker="o", markersize=3, label=name)
    epochs, values = _series(rows, "mean_fg_dice")
    ax_dice.plot(epochs, values, "k--", linewidth=2, label="mean foreground")
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="Validation Dice per class", ylim=(0.0, 1.0))
    ax_dice.legend(fontsize="small")
    ax_dice.grid(alpha=0.3)
    for ax in (ax_loss, ax_dice):
        ax.xaxis.get_major_locator().set_params(integer=True)
    return save_figure(fig, out_path, dpi=100)
