"""The README's demo as a library function: train with the Dual Focal Loss (adaptive class weights,
the config's loss) for 80 epochs on the 24 synthetic training smears of ``sample_data/blood_smear``
together with a few real BCCD smears with weak masks (``sample_data/blood_smear_bccd``, MIT
licence; its dataset.json lists both), segment the 6 synthetic validation slides with the best
checkpoint, and score them against their labels. ``medseg-dfl demo`` (and ``scripts/demo.sh``) call
:func:`run_demo` and print its per-class table.

Validation stays on the synthetic slides: their labels are exact, so the printed Dice stays
comparable with earlier demos; the BCCD smears' masks are weak labels (derived from boxes), and
how the model does on real smears is measured against BCCD's held-out ``val`` boxes instead
(``benchmarks/bccd_counts.py``, docs/results/bccd/README.md).

Every run gets a new folder (``runs/demo-<time>``), so nothing earlier is overwritten.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg_dfl.config import load_config
from medseg_dfl.data.folds import training_split
from medseg_dfl.engine.evaluation import EvaluationReport, evaluate_folders
from medseg_dfl.engine.inference import InferenceOptions, predict_folder
from medseg_dfl.engine.training import train
from medseg_dfl.io.pairing import CasePair
from medseg_dfl.progress import ProgressCallback

__all__ = ["DEFAULT_CONFIG", "DemoResult", "run_demo"]

DEFAULT_CONFIG = Path("configs/blood_smear_2d.yaml")


@dataclass
class DemoResult:
    run_dir: Path
    masks_dir: Path
    report_csv: Path
    report: EvaluationReport  # per class: Dice, IoU, HD95, ASD over the validation slides
    epochs: int
    seconds: float  # wall time of training, inference and evaluation

    @property
    def mean_dice(self) -> dict[str, float]:
        return {name: values["dice"]["mean"] for name, values in self.report.summary().items()}


def _copy_validation_split(val_pairs: Sequence[CasePair], target: Path) -> tuple[Path, Path]:
    """Copy the validation slides and labels into ``target`` (the sample data stays untouched)."""
    images, labels = target / "images", target / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for pair in val_pairs:
        shutil.copy2(pair.image, images / pair.image.name)
        if pair.label is not None:
            shutil.copy2(pair.label, labels / pair.image.name)
    return images, labels


def run_demo(config: Path = DEFAULT_CONFIG, output: Path | None = None, epochs: int = 80,
             device: str | None = None, progress: ProgressCallback | None = None) -> DemoResult:  # fmt: skip
    """Train, infer on the validation split, evaluate; returns where everything is and the scores."""
    start = time.perf_counter()
    cfg = load_config(config, [f"train.epochs={epochs}", "train.val_every=2"])
    run_dir = output or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(cfg, run_dir, device=device, progress=progress)
    split = result.split or training_split(cfg)  # the run's own split (train computed it once)
    images, labels = _copy_validation_split(split.val_pairs, run_dir / "validation_data")
    masks_dir = run_dir / "validation_masks"
    options = InferenceOptions(overlay=True, device=device or "auto")
    summary = predict_folder(result.run_dir / "best.pt", images, masks_dir, options)
    if summary.failed:
        raise ValueError(f"inference failed on {summary.failed}")
    report_csv = run_dir / "evaluation" / "report.csv"
    report = evaluate_folders(masks_dir, labels, cfg.data.class_names, output=report_csv)
    return DemoResult(run_dir, masks_dir, report_csv, report, epochs, time.perf_counter() - start)
