"""Convergence plot of a loss comparison: rare-class validation Dice vs epoch, one line per loss,
a band over seeds (min to max)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medseg_dfl.engine.compare import RunRecord

__all__ = ["plot_convergence"]


def plot_convergence(runs: list[RunRecord], rare: list[str], threshold: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, loss in enumerate(dict.fromkeys(r.loss for r in runs)):
        group = [r for r in runs if r.loss == loss]
        n = min(len(r.rare_dice_curve) for r in group)
        curves = np.array([r.rare_dice_curve[:n] for r in group])
        epochs = group[0].epochs[:n]
        colour = plt.cm.tab10(i % 10)
        ax.plot(epochs, curves.mean(0), color=colour, label=f"{loss} (n={len(group)})", linewidth=1.8)
        if len(group) > 1:
            ax.fill_between(epochs, curves.min(0), curves.max(0), color=colour, alpha=0.15)
    ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation Dice, mean of {', '.join(rare)}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Rare-class convergence (line: mean over seeds, band: min–max)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
