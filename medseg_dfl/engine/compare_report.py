"""Tables of a loss comparison: ``results.csv`` (one row per loss), ``runs.csv`` (one row per
run), ``results.md`` (ready to paste into a README) and ``convergence.png``."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medseg_dfl.engine.compare import LossSummary, RunRecord

__all__ = ["markdown_table", "write_reports"]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


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
    from medseg_dfl.visualize.comparison import plot_convergence

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
    _atomic_write_text(results_md, markdown_table(names, rare, threshold, summaries))
    convergence_png = output_dir / "convergence.png"
    plot_convergence(runs, rare, threshold, convergence_png)
    return results_csv, results_md, convergence_png
