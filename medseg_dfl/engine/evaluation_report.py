"""``write_html_report(report, path)``: the evaluation as one self-contained HTML page.

Gathers what :func:`medseg_dfl.visualize.report.render_report` draws from an
:class:`~medseg_dfl.engine.evaluation.EvaluationReport`: the per-class summary, one row per case
(mean foreground Dice, Dice per class, mean HD95), the worst cases' pictures (their image when one
with the same stem is found in ``images_dir``, by default the truth folder's sibling ``images/``),
and the training curves of the run the predictions came from (``run_dir``'s ``metrics.csv``; by
default a ``metrics.csv`` in the prediction folder or the folder above it, as ``demo`` lays out).

2D files are read for display rows first with Pillow (what a viewer shows); volumes with
``load_image`` (voxel order, spacing from the affine).
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medseg_dfl.engine.evaluation import METRIC_NAMES, CaseResult, EvaluationReport
from medseg_dfl.io.atomic import write_text
from medseg_dfl.io.names import file_stem
from medseg_dfl.io.pairing import find_images
from medseg_dfl.io.readers import PIL_SUFFIXES, TIFF_SUFFIXES, file_suffix, load_image
from medseg_dfl.progress import ProgressCallback
from medseg_dfl.progress import report as report_progress
from medseg_dfl.visualize.curves import plot_training_curves
from medseg_dfl.visualize.report import CaseFigure, SummaryRow, case_panel_png, render_report

__all__ = ["WORST_CASES", "case_mean_dice", "find_run_metrics", "write_html_report"]

WORST_CASES = 8
METRICS_CSV = "metrics.csv"


def case_mean_dice(case: CaseResult) -> float:
    """Mean Dice over the foreground classes scored in this case (NaN when none was)."""
    dice = case.metrics["dice"]
    finite = dice[np.isfinite(dice)]
    return float(finite.mean()) if finite.size else math.nan


def find_run_metrics(pred_dir: Path, run_dir: Path | None = None) -> Path | None:
    """``run_dir/metrics.csv`` (``FileNotFoundError`` when given and absent); else one found in
    ``pred_dir`` or its parent (a run's own prediction folder); else None."""
    if run_dir is not None:
        path = Path(run_dir) / METRICS_CSV
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: no {METRICS_CSV} (a run directory written by medseg-dfl train)")
        return path
    for folder in (Path(pred_dir), Path(pred_dir).resolve().parent):
        if (folder / METRICS_CSV).is_file():
            return folder / METRICS_CSV
    return None


def _is_2d(path: Path) -> bool:
    return file_suffix(path) in PIL_SUFFIXES + TIFF_SUFFIXES


def _display_2d(path: Path, mask: bool = False) -> np.ndarray:
    """(H, W) or (H, W, C) as a viewer shows the file (a palette mask keeps its indices)."""
    keep = ("L", "I;16", "I", "F", "P") if mask else ("L", "I;16", "I", "F", "RGB", "RGBA")
    with Image.open(path) as picture:
        return np.asarray(picture if picture.mode in keep else picture.convert("L" if mask else "RGB"))


def _volume(path: Path) -> tuple[np.ndarray, list[float]]:
    image = load_image(path)
    affine = np.asarray(image.affine, dtype=np.float64)
    return np.asarray(image[0]), [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)]


def _image_for(case_id: str, images_dir: Path | None) -> Path | None:
    if images_dir is None or not images_dir.is_dir():
        return None
    # an nnU-Net images folder holds CASE_0000<ending> (its single channel)
    return next((p for p in find_images(images_dir) if file_stem(p) in (case_id, f"{case_id}_0000")), None)


def _case_figure(case: CaseResult, images_dir: Path | None, size: int) -> CaseFigure:
    image_path = _image_for(case.case_id, images_dir)
    if _is_2d(case.truth):
        truth, prediction = _display_2d(case.truth, mask=True), _display_2d(case.prediction, mask=True)
        image = _display_2d(image_path) if image_path is not None else None
        if image is not None and image.shape[:2] != truth.shape:
            image = None  # not this case's image (another size): masks alone
        png = case_panel_png(image, truth, prediction, size=size)
    else:
        truth, spacing = _volume(case.truth)
        image = _volume(image_path)[0] if image_path is not None else None
        png = case_panel_png(image if image is not None and image.shape == truth.shape else None, truth,
                             _volume(case.prediction)[0], size=size, spacing=spacing)  # fmt: skip
    return CaseFigure(case.case_id, f"{case.case_id}: mean Dice {case_mean_dice(case):.3f}", png)


def _curves_png(metrics_csv: Path, class_names: Sequence[str]) -> bytes:
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [{k: (math.nan if v in ("", None) else v) for k, v in r.items()} for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_training_curves(rows, list(class_names), Path(tmp) / "curves.png")
        return path.read_bytes()


def _case_rows(report: EvaluationReport) -> tuple[list[str], list[list[float | str]]]:
    unit = report.distance_unit.split(" ")[0]
    columns = ["case", "mean Dice", *(f"Dice {n}" for n in report.foreground), f"mean HD95 ({unit})"]
    rows = []
    for case in report.cases:
        hd = case.metrics["hd95"]
        finite = hd[np.isfinite(hd)]
        mean_hd = float(finite.mean()) if finite.size else (math.inf if np.isinf(hd).any() else math.nan)
        rows.append([case.case_id, case_mean_dice(case), *(float(v) for v in case.metrics["dice"]), mean_hd])
    return columns, rows


def _worst(report: EvaluationReport, count: int) -> list[CaseResult]:
    scored = [c for c in report.cases if not math.isnan(case_mean_dice(c))]
    return sorted(scored, key=lambda c: (case_mean_dice(c), c.case_id))[:count]


def write_html_report(
    report: EvaluationReport,
    out_path: str | Path,
    *,
    images_dir: str | Path | None = None,
    run_metrics: str | Path | None = None,
    worst: int = WORST_CASES,
    thumbnail: int = 200,
    title: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write the report's HTML page to ``out_path`` (atomically); return the path.

    ``images_dir``: where the cases' images are (default: ``images/`` beside the truth folder, when
    it exists); ``run_metrics``: a run's ``metrics.csv`` for the training curves (None: no curves);
    ``worst``: how many of the lowest-Dice cases to draw; ``thumbnail``: pixels per panel side.
    """
    if not report.cases:
        raise ValueError("the evaluation has no cases to report")
    truth_dir = Path(report.cases[0].truth).parent
    beside = "imagesTr" if truth_dir.name == "labelsTr" else "images"  # nnU-Net/Decathlon: labelsTr/ + imagesTr/
    images = Path(images_dir) if images_dir is not None else truth_dir.parent / beside
    if images_dir is not None and not images.is_dir():
        raise NotADirectoryError(f"images folder not found: {images}")
    summary = [SummaryRow(name, {m: (s["mean"], s["std"], s["n"]) for m, s in per.items()})
               for name, per in report.summary().items()]  # fmt: skip
    worst_cases = _worst(report, worst)
    figures = []
    for done, case in enumerate(worst_cases):
        report_progress(progress, done, len(worst_cases), f"drawing {case.case_id}")
        figures.append(_case_figure(case, images if images.is_dir() else None, thumbnail))
    report_progress(progress, len(worst_cases), len(worst_cases), "")
    columns, rows = _case_rows(report)
    notes = [f"{len(report.cases)} case(s); predictions {Path(report.cases[0].prediction).parent}, truth {truth_dir}"]
    if run_metrics is not None:
        notes.append(f"training curves from {run_metrics}")
    unit = {m: f" ({report.distance_unit})" for m in ("hd95", "asd")}
    page = render_report(
        title=title or f"Evaluation of {len(report.cases)} case(s)", class_names=report.class_names,
        summary=summary, metrics=METRIC_NAMES, case_columns=columns, case_rows=rows, worst=figures,
        curves_png=_curves_png(Path(run_metrics), report.foreground) if run_metrics is not None else None,
        notes=notes, units=unit,
    )  # fmt: skip
    return write_text(Path(out_path), page)
