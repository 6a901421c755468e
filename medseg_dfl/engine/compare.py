"""Loss comparison: one training run per (loss, seed), everything else identical, then tables.

Each run lives in ``OUTPUT/runs/<loss>/seed<k>/`` and is an ordinary training run directory, so a
finished run is read back instead of retrained and an interrupted one is resumed from ``last.pt``.
Scores are the validation metrics of the *last* epoch (a fixed budget, not the best epoch, so
the choice of epoch does not favour any loss); convergence is the first epoch at which the mean
Dice of the rare classes reaches a threshold.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg_dfl.config import Config, LossConfig, save_config
from medseg_dfl.data.folds import training_split
from medseg_dfl.engine.compare_report import LossSummary, RunRecord, write_reports
from medseg_dfl.engine.training import train
from medseg_dfl.io.atomic import remove_stale_temps
from medseg_dfl.io.readers import load_image
from medseg_dfl.losses.registry import LOSS_NAMES
from medseg_dfl.progress import ProgressCallback

__all__ = ["ComparisonResult", "LossSummary", "RunRecord", "compare_losses", "read_metrics", "summarise_runs"]


@dataclass
class ComparisonResult:
    output_dir: Path
    class_names: list[str]
    rare_classes: list[str]
    threshold: float
    runs: list[RunRecord]
    summaries: list[LossSummary]
    results_csv: Path
    results_md: Path
    convergence_png: Path


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a run's ``metrics.csv`` as floats (empty cells become NaN)."""
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()} for row in rows]


def _run_config(cfg: Config, loss: str, seed: int) -> Config:
    # Same kwargs only when the base config already names this loss: kwargs of one loss are not
    # valid for another.
    kwargs = dict(cfg.loss.kwargs) if cfg.loss.name == loss else {}
    return dataclasses.replace(
        cfg,
        experiment=dataclasses.replace(cfg.experiment, name=f"{cfg.experiment.name}-{loss}-seed{seed}", seed=seed),
        loss=LossConfig(name=loss, kwargs=kwargs),
        train=dataclasses.replace(cfg.train, val_every=1),
    )


def _is_finished(run_dir: Path, epochs: int) -> bool:
    metrics = run_dir / "metrics.csv"
    if not (metrics.is_file() and (run_dir / "last.pt").is_file()):
        return False
    rows = read_metrics(metrics)
    return bool(rows) and int(rows[-1]["epoch"]) >= epochs


def _record(loss: str, seed: int, run_dir: Path, rare: list[str], names: list[str], threshold: float) -> RunRecord:
    rows = read_metrics(run_dir / "metrics.csv")
    # nanmean: MONAI's Dice is NaN for a class absent from every validation image.
    curve = [_nanmean([row[f"dice_{c}"] for c in rare]) for row in rows]
    last = rows[-1]
    final = {f"dice_{c}": last[f"dice_{c}"] for c in names} | {f"iou_{c}": last[f"iou_{c}"] for c in names}
    final["rare_dice"] = curve[-1]
    final["mean_fg_dice"] = _nanmean([last[f"dice_{c}"] for c in names[1:]])
    reached = next((int(row["epoch"]) for row, d in zip(rows, curve, strict=True) if d >= threshold), None)
    return RunRecord(loss, seed, run_dir, [int(r["epoch"]) for r in rows], curve, final, reached)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _nanstd(values: np.ndarray) -> float:
    """Sample std over the finite values; NaN with none (a class absent from every run), no warning."""
    finite = values[~np.isnan(values)]
    return float(np.std(finite, ddof=1)) if finite.size > 1 else (0.0 if finite.size else math.nan)


def summarise_runs(runs: list[RunRecord]) -> list[LossSummary]:
    """Mean and standard deviation over seeds of every final score, per loss (in run order)."""
    summaries = []
    for loss in dict.fromkeys(r.loss for r in runs):
        group = [r for r in runs if r.loss == loss]
        keys = list(group[0].final)
        values = {k: np.array([r.final[k] for r in group], dtype=float) for k in keys}
        summaries.append(
            LossSummary(
                loss=loss,
                n_seeds=len(group),
                mean={k: _nanmean(list(v)) for k, v in values.items()},
                std={k: _nanstd(v) for k, v in values.items()},
                epochs_to_threshold=[r.epochs_to_threshold for r in group],
            )
        )
    return summaries


def compare_losses(
    cfg: Config,
    losses: list[str],
    seeds: int,
    output_dir: Path,
    rare_classes: list[str] | None = None,
    threshold: float = 0.5,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    train_fn: Callable[..., object] | None = None,
) -> ComparisonResult:
    """Train every loss with ``seeds`` seeds (cfg.experiment.seed + 0..seeds-1) and tabulate.

    ``rare_classes`` are class names; by default every foreground class except the most frequent
    one in the training labels (for the blood smears: wbc and platelet).
    """
    if train_fn is None:
        train_fn = train
    names = list(cfg.data.class_names)
    bad = [loss for loss in losses if loss not in LOSS_NAMES]
    if bad or not losses:
        raise ValueError(f"unknown loss name(s) {bad or losses}; choose from {', '.join(LOSS_NAMES)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if cfg.data.all_cases:  # the losses are scored on the validation cases
        raise ValueError("compare scores each loss on the validation cases; data.all_cases leaves none (set it to false)")
    rare = _resolve_rare_classes(cfg, rare_classes)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output_dir)  # a re-run repairs what a killed one left (runs clean their own)
    save_config(cfg, output_dir / "base_config.yaml")
    runs = []
    for loss in losses:
        for k in range(seeds):
            seed = cfg.experiment.seed + k
            run_dir = output_dir / "runs" / loss / f"seed{seed}"
            if not _is_finished(run_dir, cfg.train.epochs):
                resume = (run_dir / "last.pt").is_file()
                train_fn(_run_config(cfg, loss, seed), run_dir, resume=resume, device=device, progress=progress)
            runs.append(_record(loss, seed, run_dir, rare, names, threshold))
    summaries = summarise_runs(runs)
    csv_path, md_path, png_path = write_reports(output_dir, names, rare, threshold, runs, summaries)
    return ComparisonResult(output_dir, names, rare, threshold, runs, summaries, csv_path, md_path, png_path)


def _resolve_rare_classes(cfg: Config, rare_classes: list[str] | None) -> list[str]:
    names = list(cfg.data.class_names)
    if rare_classes:
        unknown = [c for c in rare_classes if c not in names]
        if unknown:
            raise ValueError(f"rare class(es) {unknown} are not in data.class_names {names}")
        return list(rare_classes)
    freqs = _training_class_frequencies(cfg)
    foreground = sorted(range(1, len(names)), key=lambda i: freqs[i])
    # Keep the most frequent foreground class out when there are several: it is not rare.
    chosen = foreground[:-1] if len(foreground) > 1 else foreground
    return [names[i] for i in sorted(chosen)]


def _training_class_frequencies(cfg: Config) -> np.ndarray:
    counts = np.zeros(cfg.data.num_classes)
    for pair in training_split(cfg).train_pairs:  # fold-aware: the cases the runs will train on
        label = np.asarray(load_image(pair.label)).astype(np.int64).ravel()
        counts += np.bincount(label, minlength=cfg.data.num_classes)[: cfg.data.num_classes]
    return counts / max(counts.sum(), 1)
