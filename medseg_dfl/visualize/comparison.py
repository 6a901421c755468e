"""Convergence plot of a loss comparison: rare-class validation Dice vs epoch, one line per loss,
a band over seeds (min to max).

Takes plain curves (epochs and values per seed), not engine types, so the plot sits below the
engine in the import order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from medseg_dfl.io.atomic import save_figure

__all__ = ["Curve", "plot_convergence"]

# (epochs, values) of one run
Curve = tuple[Sequence[int], Sequence[float]]


def plot_convergence(curves: Mapping[str, Sequence[Curve]], rare: Sequence[str], threshold: float, path: Path) -> Path:
    """``curves``: loss name -> one (epochs, rare-class Dice) curve per seed. Written atomically."""
    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    tab10 = colormaps["tab10"]
    for i, (loss, group) in enumerate(curves.items()):
        n = min(len(values) for _, values in group)
        values = np.array([list(v)[:n] for _, v in group], dtype=float)
        epochs = list(group[0][0])[:n]
        colour = tab10(i % 10)
        ax.plot(epochs, values.mean(0), color=colour, label=f"{loss} (n={len(group)})", linewidth=1.8)
        if len(group) > 1:
            ax.fill_between(epochs, values.min(0), values.max(0), color=colour, alpha=0.15)
    ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation Dice, mean of {', '.join(rare)}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Rare-class convergence (line: mean over seeds, band: min–max)")
    fig.tight_layout()
    return save_figure(fig, path)
