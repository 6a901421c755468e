"""Size and time of `evaluate`'s HTML report on real WBC masks (issue 22, item 4).

Truth: the first N masks of segmentation_WBC `Dataset 1` (0/128/255 -> 0/1/2), written to a temp
folder; prediction: the same masks perturbed (shifted by up to 6 px, a random share eroded or
dilated, every tenth case losing its nucleus), so the Dice spread is real. Images: links to the BMPs.

    python benchmarks/report_size.py [--cases 100] [--source /work/shared/datasets/segmentation_WBC]

Prints the evaluation time, the report time and the report's size (the report also stays in the
temp folder it names, for a browser).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medseg_dfl.datasets.wbc import mask_to_classes
from medseg_dfl.engine.evaluation import evaluate_folders
from medseg_dfl.engine.evaluation_report import write_html_report


def perturb(mask: np.ndarray, rng: np.random.Generator, index: int) -> np.ndarray:
    shifted = np.roll(mask, tuple(rng.integers(-6, 7, 2)), axis=(0, 1))
    cell = shifted > 0
    op = ndimage.binary_erosion if rng.random() < 0.5 else ndimage.binary_dilation
    cell = op(cell, iterations=int(rng.integers(1, 8)))
    out = np.where(cell, np.maximum(shifted, 1), 0).astype(np.uint8)
    if index % 10 == 0:
        out[out == 2] = 1  # the nucleus missed
    return out


def build(source: Path, root: Path, cases: int) -> tuple[Path, Path, Path]:
    folders = [root / name for name in ("images", "truth", "pred")]
    for folder in folders:
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, mask_path in enumerate(sorted((source / "Dataset 1").glob("*.png"))[:cases]):
        truth = mask_to_classes(np.asarray(Image.open(mask_path).convert("L")))
        Image.fromarray(truth).save(folders[1] / mask_path.name)
        Image.fromarray(perturb(truth, rng, i)).save(folders[2] / mask_path.name)
        os.symlink(mask_path.with_suffix(".bmp"), folders[0] / f"{mask_path.stem}.bmp")
    return tuple(folders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--source", type=Path, default=Path("/work/shared/datasets/segmentation_WBC"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wbc_report_"))
    images, truth, pred = build(args.source, root, args.cases)
    start = time.perf_counter()
    report = evaluate_folders(pred, truth, ["background", "cytoplasm", "nucleus"], output=root / "report.csv")
    evaluated = time.perf_counter()
    page = write_html_report(report, root / "report.html", images_dir=images)
    done = time.perf_counter()
    dice = [float(np.nanmean(c.metrics["dice"])) for c in report.cases]
    print(f"{len(report.cases)} cases (mean Dice {np.mean(dice):.3f}, min {np.min(dice):.3f}); "
          f"evaluate {evaluated - start:.1f} s, HTML report {done - evaluated:.2f} s, "
          f"{page.stat().st_size / 1e6:.2f} MB: {page}")


if __name__ == "__main__":
    main()
