"""Tables of a loss comparison: ``results.csv`` (one row per loss), ``runs.csv`` (one row per
run), ``results.md`` (ready to paste into a README) and ``convergence.png``."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg_dfl.io.atomic import write_text
from medseg_dfl.visualize.comparison import plot_convergence

__all__ = ["LossSummary", "RunRecord", "markdown_table", "write_reports"]


@dataclass
class RunRecord:
    """One finished run: its per-epoch validation curves and final scores."""

    loss: str
    seed: int
    run_dir: Path
    epochs: list[int]
    rare_dice_curve: list[float]
    final: dict[str, float]
    epochs_to_threshold: int | None


@dataclass
class LossSummary:
    loss: str
    n_seeds: int
    mean: dict[str, float]
    std: dict[str, float]
    epochs_to_threshold: list[int | None] = field(default_factory=list)

    @property
    def reached(self) -> int:
        return sum(e is not None for e in self.epochs_to_threshold)

    @property
    def mean_epochs_to_threshold(self) -> float:
        hits = [e for e in self.epochs_to_threshold if e is not None]
        return float(np.mean(hits)) if hits else math.nan


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _fmt(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def _epochs_cell(summary: LossSummary) -> str:
    if summary.reached == 0:
        return f"not reached (0/{summary.n_seeds})"
    return f"{summary.mean_epochs_to_threshold:.1f} ({summary.reached}/{summary.n_seeds})"


def markdown_table(names: list[str], rare: list[str], threshold: float, summaries: list[LossSummary]) -> str:
    """Per loss: Dice of every foreground class, rare-class mean Dice, mean IoU, epochs to threshold."""
    fg = names[1:]
    header = ["loss", *[f"Dice {c}" for c in fg], "rare-class Dice", "mean fg Dice", f"epochs to rare Dice ≥ {threshold:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best_rare = max(s.mean["rare_dice"] for s in summaries)
    for s in summaries:
        rare_cell = _fmt(s.mean["rare_dice"], s.std["rare_dice"])
        if s.mean["rare_dice"] == best_rare:
            rare_cell = f"**{rare_cell}**"
        cells = [
            s.loss,
            *[_fmt(s.mean[f"dice_{c}"], s.std[f"dice_{c}"]) for c in fg],
            rare_cell,
            _fmt(s.mean["mean_fg_dice"], s.std["mean_fg_dice"]),
            _epochs_cell(s),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = summaries[0].n_seeds if summaries else 0
    lines.append("")
    lines.append(
        f"Validation scores at the last epoch, mean ± std over {seeds} seed(s); rare classes: {', '.join(rare)}."
    )
    return "\n".join(lines) + "\n"


def write_reports(
    output_dir: Path,
    names: list[str],
    rare: list[str],
    threshold: float,
    runs: list[RunRecord],
    summaries: list[LossSummary],
) -> tuple[Path, Path, Path]:
    keys = list(summaries[0].mean) if summaries else []
    header = ["loss", "n_seeds"]
    for k in keys:
        header += [f"{k}_mean", f"{k}_std"]
    header += ["epochs_to_threshold_mean", "seeds_reaching_threshold"]
    rows = []
    for s in summaries:
        row: list[object] = [s.loss, s.n_seeds]
        for k in keys:
            row += [f"{s.mean[k]:.6f}", f"{s.std[k]:.6f}"]
        row += [f"{s.mean_epochs_to_threshold:.2f}", s.reached]
        rows.append(row)
    results_csv = output_dir / "results.csv"
    _write_csv(results_csv, header, rows)
    run_keys = list(runs[0].final) if runs else []
    _write_csv(
        output_dir / "runs.csv",
        ["loss", "seed", *run_keys, "epochs_to_threshold"],
        [[r.loss, r.seed, *[f"{r.final[k]:.6f}" for k in run_keys], r.epochs_to_threshold or ""] for r in runs],
    )
    results_md = output_dir / "results.md"
    write_text(results_md, markdown_table(names, rare, threshold, summaries))
    convergence_png = output_dir / "convergence.png"
    curves: dict[str, list[tuple[list[int], list[float]]]] = {}
    for run in runs:
        curves.setdefault(run.loss, []).append((run.epochs, run.rare_dice_curve))
    plot_convergence(curves, rare, threshold, convergence_png)
    return results_csv, results_md, convergence_png
