"""The README's demo: train with the Dual Focal Loss (adaptive class weights, the config's loss) on
``sample_data/blood_smear`` for 40 epochs (about 2 minutes on 2 CPU cores), segment the
validation slides with the best checkpoint, and score them against their labels.

Run from the repository root: ``python -m medseg_dfl.demo [--epochs N] [--output DIR]``.
Every run gets a new folder (``runs/demo-<time>``), so nothing earlier is overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from medseg_dfl.config import Config, load_config

__all__ = ["DemoResult", "run_demo"]

DEFAULT_CONFIG = Path("configs/blood_smear_2d.yaml")


@dataclass
class DemoResult:
    run_dir: Path
    masks_dir: Path
    report_csv: Path
    mean_dice: dict[str, float]


def _copy_validation_split(cfg: Config, target: Path) -> tuple[Path, Path]:
    """Copy the validation slides and labels into ``target`` (the sample data stays untouched)."""
    from medseg_dfl.io.pairing import discover_pairs, split_pairs

    root = Path(cfg.data.root)
    _, val_pairs = split_pairs(root, discover_pairs(root), cfg.data.val_fraction, cfg.experiment.seed)
    images, labels = target / "images", target / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for pair in val_pairs:
        shutil.copy2(pair.image, images / pair.image.name)
        if pair.label is not None:
            shutil.copy2(pair.label, labels / pair.image.name)
    return images, labels


def run_demo(config: Path = DEFAULT_CONFIG, output: Path | None = None, epochs: int = 40,
             device: str | None = None) -> DemoResult:
    """Train, infer on the validation split, evaluate; returns where everything is."""
    from medseg_dfl.engine.evaluation import evaluate_folders
    from medseg_dfl.engine.inference import InferenceOptions, predict_folder
    from medseg_dfl.engine.training import train

    cfg = load_config(config, [f"train.epochs={epochs}", "train.val_every=2"])
    run_dir = output or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(cfg, run_dir, device=device)
    images, labels = _copy_validation_split(cfg, run_dir / "validation_data")
    masks_dir = run_dir / "validation_masks"
    options = InferenceOptions(overlay=True, device=device or "auto", show_progress=True)
    summary = predict_folder(result.run_dir / "best.pt", images, masks_dir, options)
    if summary.failed:
        raise ValueError(f"inference failed on {summary.failed}")
    report_csv = run_dir / "evaluation" / "report.csv"
    report = evaluate_folders(masks_dir, labels, cfg.data.class_names, output=report_csv)
    mean_dice = {name: values["dice"]["mean"] for name, values in report.summary().items()}
    return DemoResult(run_dir, masks_dir, report_csv, mean_dice)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see cli/main.py; torch is not imported yet
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        result = run_demo(args.config, args.output, args.epochs, args.device)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps({k: round(v, 3) for k, v in result.mean_dice.items()}, indent=None))
    print(f"run (curves.png, metrics.csv, best.pt): {result.run_dir}")
    print(f"validation masks and overlays:         {result.masks_dir}")
    print(f"evaluation report:                     {result.report_csv}")


if __name__ == "__main__":
    main()

