"""Evaluate predicted label maps against ground truth: MONAI metrics per case and per class.

Metrics (foreground classes 1..K-1; background is not scored):

- ``dice``, ``iou``: the convention of :mod:`medseg_dfl.engine.metrics`, shared with training's
  ``metrics.csv``: a class absent from both prediction and truth is not scored (NaN, left out of
  the means; ``n`` counts the scored cases); absent from the truth but predicted scores 0.0.
- ``hd95``, ``asd``: MONAI ``HausdorffDistanceMetric(percentile=95)`` and symmetric
  ``SurfaceDistanceMetric``, in physical units (the truth's voxel spacing from its affine).
  A class absent from both has no surface: NaN. A class present in only one of them: +inf.

Summary statistics (mean, std) per class use only the finite values of each metric; ``n`` says how
many cases that was, so a mean over fewer cases is visible.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric
from rich.markup import escape
from rich.table import Table

from medseg_dfl.engine.metrics import dice_iou
from medseg_dfl.io.atomic import write_json, write_text
from medseg_dfl.io.limits import check_finite
from medseg_dfl.io.names import NON_MASK_SUFFIXES, file_stem
from medseg_dfl.io.nnunet import nnunet_root_of, read_nnunet_dataset
from medseg_dfl.io.pairing import find_images
from medseg_dfl.io.readers import PIL_SUFFIXES, TIFF_SUFFIXES, file_suffix, load_image
from medseg_dfl.io.spreadsheet import safe_rows
from medseg_dfl.progress import ProgressCallback
from medseg_dfl.progress import report as report_progress

__all__ = [
    "METRIC_NAMES",
    "CaseResult",
    "EvaluationReport",
    "compute_case_metrics",
    "evaluate_folders",
    "pair_predictions",
    "summary_table",
    "write_report",
]

METRIC_NAMES = ("dice", "iou", "hd95", "asd")
# A suffix often given to `infer --suffix` for the masks: "<case>_seg" is matched to "<case>".
_MASK_SUFFIX = "_seg"
# Values for a class that is absent from a case's prediction and truth alike.
_ABSENT_IN_BOTH = {"dice": math.nan, "iou": math.nan, "hd95": math.nan, "asd": math.nan}


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    prediction: Path
    truth: Path
    # metric name -> values for the foreground classes 1..K-1 (index 0 = class 1).
    metrics: dict[str, np.ndarray]


@dataclass
class EvaluationReport:
    class_names: list[str]  # all classes, background first
    cases: list[CaseResult]
    csv_path: Path | None = None
    json_path: Path | None = None
    # Unit of hd95/asd: "mm" for volumes (their voxel spacing), "px" for 2D images (pixels).
    distance_unit: str = "mm"

    @property
    def foreground(self) -> list[str]:
        return self.class_names[1:]

    def rows(self) -> list[dict[str, object]]:
        """One row per case x foreground class."""
        out: list[dict[str, object]] = []
        for case in self.cases:
            for i, name in enumerate(self.foreground):
                row: dict[str, object] = {"case": case.case_id, "class": name}
                row.update({m: float(case.metrics[m][i]) for m in METRIC_NAMES})
                out.append(row)
        return out

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """class -> metric -> {mean, std, n} over the cases' finite values."""
        result: dict[str, dict[str, dict[str, float]]] = {}
        for i, name in enumerate(self.foreground):
            result[name] = {}
            for metric in METRIC_NAMES:
                values = np.array([case.metrics[metric][i] for case in self.cases], dtype=np.float64)
                finite = values[np.isfinite(values)]
                result[name][metric] = {
                    "mean": float(finite.mean()) if finite.size else math.nan,
                    "std": float(finite.std()) if finite.size else math.nan,
                    "n": int(finite.size),
                }
        return result


# --------------------------------------------------------------------------- math


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(spatial...) int labels -> (1, K, spatial...) float one-hot."""
    tensor = torch.as_tensor(labels.astype(np.int64))
    return torch.nn.functional.one_hot(tensor, num_classes).movedim(-1, 0)[None].float()


def compute_case_metrics(
    prediction: np.ndarray, truth: np.ndarray, num_classes: int, spacing: Sequence[float]
) -> dict[str, np.ndarray]:
    """Dice, IoU, HD95, ASD of foreground classes 1..num_classes-1 for two label maps.

    ``prediction`` and ``truth`` are integer label maps of the same spatial shape (no channel
    axis); ``spacing`` is the physical size of a voxel along each axis (distances are in its units).
    """
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    pred, true = _one_hot(prediction, num_classes)[:, 1:], _one_hot(truth, num_classes)[:, 1:]
    dice, iou = (values[0] for values in dice_iou(pred, true))
    in_pred = pred.flatten(2).any(-1)[0]
    in_true = true.flatten(2).any(-1)[0]
    # Distances only where both have the class: MONAI warns and is inconsistent (NaN vs inf) otherwise.
    hd95 = torch.where(in_pred | in_true, math.inf, math.nan)
    asd = hd95.clone()
    both = torch.nonzero(in_pred & in_true).flatten()
    if both.numel():
        spacing_list = [float(s) for s in spacing]
        hd_metric = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
        asd_metric = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95[both] = hd_metric(pred[:, both], true[:, both], spacing=spacing_list)[0]
            asd[both] = asd_metric(pred[:, both], true[:, both], spacing=spacing_list)[0]
    return {"dice": dice.numpy(), "iou": iou.numpy(), "hd95": hd95.numpy(), "asd": asd.numpy()}


def _pad_classes(metrics: dict[str, np.ndarray], num_foreground: int) -> dict[str, np.ndarray]:
    """Extend a case's metrics to ``num_foreground`` classes; the added ones are absent in both."""
    out = {}
    for name, values in metrics.items():
        extra = np.full(num_foreground - values.size, _ABSENT_IN_BOTH[name], dtype=np.float64)
        out[name] = np.concatenate([values.astype(np.float64), extra])
    return out


# --------------------------------------------------------------------------- files


def _case_id_of_prediction(path: Path, truth_ids: set[str]) -> str | None:
    """The case id a prediction file belongs to; None for overlays/probability maps."""
    stem = file_stem(path)
    if stem in truth_ids:
        return stem
    if stem.endswith(NON_MASK_SUFFIXES):
        return None
    return stem.removesuffix(_MASK_SUFFIX)


def _nnunet_truth(truth_dir: Path) -> tuple[Path, list[str] | None]:
    """An nnU-Net raw dataset (or its ``labelsTr/``) as truth: ``labelsTr/`` and the class names of
    its ``labels``; any other folder as it is, without names."""
    root = nnunet_root_of(truth_dir) if truth_dir.is_dir() else None
    if root is None or (truth_dir != root and truth_dir.name != "labelsTr"):
        return truth_dir, None
    return root / "labelsTr", read_nnunet_dataset(root, cases=False).class_names


def pair_predictions(pred_dir: Path, truth_dir: Path) -> list[tuple[str, Path, Path]]:
    """(case id, prediction, truth) triples matched by file stem; errors name unmatched files."""
    for folder, what in ((pred_dir, "prediction"), (truth_dir, "truth")):
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{what} folder not found: {folder}")
    truths: dict[str, Path] = {}
    for path in find_images(Path(truth_dir), recursive=False):
        truths.setdefault(file_stem(path), path)
    preds: dict[str, Path] = {}
    extra: list[str] = []
    for path in find_images(Path(pred_dir), recursive=False):
        case_id = _case_id_of_prediction(path, set(truths))
        if case_id is None:
            continue
        if case_id in preds or case_id not in truths:
            extra.append(path.name)
        else:
            preds[case_id] = path
    missing = sorted(truths[c].name for c in truths if c not in preds)
    if extra or missing:
        parts = []
        if missing:
            parts.append(f"no prediction in {pred_dir} for {', '.join(missing)}")
        if extra:
            parts.append(f"no truth in {truth_dir} for {', '.join(sorted(extra))}")
        raise ValueError("; ".join(parts))
    if not truths:
        raise ValueError(f"no images found in {truth_dir}")
    return [(c, preds[c], truths[c]) for c in sorted(truths)]


def _spacing(affine: np.ndarray, dims: int) -> list[float]:
    return [float(s) for s in np.linalg.norm(affine[:dims, :dims], axis=0)]


def _read_label_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = load_image(path)
    check_finite(image.numpy(), path, "label map")
    if image.shape[0] != 1:
        raise ValueError(f"{path}: expected a single-channel label map, got {image.shape[0]} channels")
    array = np.asarray(image[0])
    if not np.allclose(array, np.round(array)) or array.min() < 0:
        raise ValueError(f"{path}: not a label map (values must be non-negative integers)")
    return array.astype(np.int64), np.asarray(image.affine, dtype=np.float64)


def _read_case(pred_path: Path, truth_path: Path) -> tuple[np.ndarray, np.ndarray, list[float]]:
    pred, pred_affine = _read_label_map(pred_path)
    truth, truth_affine = _read_label_map(truth_path)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: {pred_path} is {pred.shape}, {truth_path} is {truth.shape}")
    if pred_affine.shape != truth_affine.shape or not np.allclose(pred_affine, truth_affine, atol=1e-4):
        raise ValueError(
            f"geometry mismatch: {pred_path} and {truth_path} have different affines "
            f"(spacing/origin/direction)\n{pred_affine.round(4).tolist()}\nvs\n{truth_affine.round(4).tolist()}"
        )
    return pred, truth, _spacing(truth_affine, truth.ndim)


def _case_num_classes(pred: np.ndarray, truth: np.ndarray, class_names: list[str] | None, names: str) -> int:
    highest = int(max(pred.max(), truth.max()))
    if class_names is None:
        return max(highest + 1, 2)
    if highest >= len(class_names):
        raise ValueError(f"{names}: label {highest} but only {len(class_names)} classes ({', '.join(class_names)})")
    return len(class_names)


def evaluate_folders(
    pred_dir: Path,
    truth_dir: Path,
    class_names: list[str] | None = None,
    output: Path | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Score every prediction in ``pred_dir`` against the same-stem file in ``truth_dir``.

    ``truth_dir`` may be an nnU-Net raw dataset (``DatasetXXX_Name``) or its ``labelsTr/``: the truths
    are ``labelsTr/CASE<file_ending>`` and, without ``class_names``, the names are its ``labels``.

    ``class_names`` lists all classes, background first; None = ``class_<i>`` up to the highest
    label found. With ``output`` (a ``.csv`` path) the report is written there and as JSON beside it.
    """
    if class_names is not None and len(class_names) < 2:
        raise ValueError(f"need at least 2 class names (background + one), got {class_names}")
    truth_dir, nnunet_names = _nnunet_truth(Path(truth_dir))
    class_names = class_names if class_names is not None else nnunet_names
    pairs = pair_predictions(Path(pred_dir), truth_dir)
    raw: list[tuple[str, Path, Path, dict[str, np.ndarray]]] = []
    for done, (case_id, pred_path, truth_path) in enumerate(pairs):
        report_progress(progress, done, len(pairs), case_id)
        pred, truth, spacing = _read_case(pred_path, truth_path)
        num_classes = _case_num_classes(pred, truth, class_names, f"{pred_path} / {truth_path}")
        raw.append((case_id, pred_path, truth_path, compute_case_metrics(pred, truth, num_classes, spacing)))
    report_progress(progress, len(pairs), len(pairs), "")
    num_classes = len(class_names) if class_names else max(r[3]["dice"].size for r in raw) + 1
    names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    cases = [CaseResult(c, p, t, _pad_classes(m, num_classes - 1)) for c, p, t, m in raw]
    report = EvaluationReport(class_names=names, cases=cases, distance_unit=_distance_unit(pairs))
    if output is not None:
        write_report(report, Path(output))
    return report


def _distance_unit(pairs: Sequence[tuple[str, Path, Path]]) -> str:
    """"px" when every truth is a 2D image (PNG/TIFF/JPEG/BMP: no physical spacing), else "mm"."""
    two_d = {file_suffix(truth) in PIL_SUFFIXES + TIFF_SUFFIXES for _, _, truth in pairs}
    return "px" if two_d == {True} else ("mm" if two_d == {False} else "mm (volumes) / px (2D images)")


def _json_number(value: float) -> float | str | None:
    """JSON has no NaN/inf: NaN -> null, inf -> "inf"."""
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def write_report(report: EvaluationReport, output: Path) -> tuple[Path, Path]:
    """Write ``output`` (CSV, one row per case x class) and ``output`` with ``.json`` (cases + summary)."""
    csv_path = output if output.suffix == ".csv" else output.with_name(output.name + ".csv")
    json_path = csv_path.with_suffix(".json")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case", "class", *METRIC_NAMES], lineterminator="\n")
    writer.writeheader()
    writer.writerows(safe_rows(report.rows(), ("case",)))  # case names starting '=' must not become formulas
    summary = {
        c: {m: {k: _json_number(v) for k, v in stats.items()} for m, stats in per.items()}
        for c, per in report.summary().items()
    }
    document = {
        "class_names": report.class_names,
        "distance_unit": report.distance_unit,
        "cases": [
            {
                "case": case.case_id,
                "prediction": str(case.prediction),
                "truth": str(case.truth),
                "metrics": {
                    name: {m: _json_number(float(case.metrics[m][i])) for m in METRIC_NAMES}
                    for i, name in enumerate(report.foreground)
                },
            }
            for case in report.cases
        ],
        "summary": summary,
    }
    write_text(csv_path, buffer.getvalue())  # a report is replaced by a re-run
    write_json(json_path, document)
    report.csv_path, report.json_path = csv_path, json_path
    return csv_path, json_path


def summary_table(report: EvaluationReport):  # -> rich.table.Table
    """Rich table: mean ± std per foreground class and metric; "(n=k)" when only k cases were finite."""
    table = Table(title=f"Evaluation of {len(report.cases)} case(s): mean ± std")
    table.add_column("class")
    for metric in METRIC_NAMES:
        unit = f" ({report.distance_unit})" if metric in ("hd95", "asd") else ""
        table.add_column(metric + unit, justify="right")
    digits = {"dice": 3, "iou": 3, "hd95": 2, "asd": 2}
    for name, per_metric in report.summary().items():
        cells = []
        for metric in METRIC_NAMES:
            stats, d = per_metric[metric], digits[metric]
            if stats["n"] == 0:
                cells.append("n/a")
                continue
            partial = f" (n={stats['n']})" if stats["n"] < len(report.cases) else ""
            cells.append(f"{stats['mean']:.{d}f} ± {stats['std']:.{d}f}{partial}")
        table.add_row(escape(name), *cells)
    return table
