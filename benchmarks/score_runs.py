"""Score training runs on a folder of validation images: Dice and HD95 per class, with and without TTA.

For every run folder (or checkpoint) given, ``infer`` segments IMAGES (``predict_folder``, the same
code as ``medseg-dfl infer``) and ``evaluate`` scores the masks against LABELS
(``evaluate_folders``: MONAI Dice and HD95 in the labels' physical units). ``--tta`` adds a row per
run with mirroring test-time augmentation, and the inference time of both, so the Dice gain and the
time cost of TTA come from the same run. Several runs with ``--ensemble`` are also scored as one
ensemble (probabilities averaged).

    python benchmarks/score_runs.py runs/cmp/runs/*/seed* --images val/images --labels val/labels \\
        --classes background,anterior,posterior --checkpoint last.pt [--tta] [--ensemble]

Prints a markdown table: run, mode, per-class Dice and HD95 (mean over cases), mean fg Dice, seconds.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from medseg_dfl.engine.evaluation import evaluate_folders
from medseg_dfl.engine.inference import InferenceOptions, predict_folder


def score(checkpoints: list[Path], images: Path, labels: Path, classes: list[str], tta: bool,
          keep_largest: tuple[str, ...] = ()) -> tuple[dict, float]:  # fmt: skip
    options = InferenceOptions(device="cpu", tta=tta, keep_largest=keep_largest)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = predict_folder(checkpoints, images, Path(tmp), options)
        seconds = time.perf_counter() - start
        if summary.failed:
            raise ValueError(f"inference failed for {summary.failed}")
        report = evaluate_folders(Path(tmp), labels, class_names=classes)
    return report.summary(), seconds


def _row(name: str, mode: str, summary: dict, classes: list[str], seconds: float) -> str:
    dice = [summary[c]["dice"]["mean"] for c in classes[1:]]
    hd95 = [summary[c]["hd95"]["mean"] for c in classes[1:]]
    finite = [d for d in dice if not math.isnan(d)]
    mean = sum(finite) / len(finite) if finite else math.nan
    cells = [f"{d:.3f}" for d in dice] + [f"{h:.2f}" for h in hd95] + [f"{mean:.3f}", f"{seconds:.1f}"]
    return f"| {name} | {mode} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (or checkpoint files)")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--classes", required=True, help="comma-separated, background first")
    parser.add_argument("--checkpoint", default="last.pt", help="file inside each run folder (last.pt / best.pt)")
    parser.add_argument("--tta", action="store_true", help="also score with mirroring TTA")
    parser.add_argument("--ensemble", action="store_true", help="also score all runs as one ensemble")
    parser.add_argument("--keep-largest", default="", metavar="CLASSES",
                        help="also score with only the largest component of these classes kept ('all' = every one)")
    args = parser.parse_args()
    largest = tuple(n.strip() for n in args.keep_largest.split(",") if n.strip())
    classes = [c.strip() for c in args.classes.split(",")]
    fg = classes[1:]
    print("| run | mode | " + " | ".join(f"Dice {c}" for c in fg) + " | " + " | ".join(f"HD95 {c}" for c in fg)
          + " | mean fg Dice | seconds |")  # fmt: skip
    print("|---|---|" + "---|" * (2 * len(fg) + 2))
    checkpoints = [r / args.checkpoint if r.is_dir() else r for r in args.runs]
    modes = [(tta, keep) for tta in ([False, True] if args.tta else [False]) for keep in ([(), largest] if largest else [()])]
    groups = [(str(run), [ckpt]) for run, ckpt in zip(args.runs, checkpoints, strict=True)]
    if args.ensemble and len(checkpoints) > 1:
        groups.append((f"ensemble of {len(checkpoints)}", checkpoints))
    for name, members in groups:
        for tta, keep in modes:
            summary, seconds = score(members, args.images, args.labels, classes, tta, keep)
            mode = "+".join(["tta"] * tta + ["largest"] * bool(keep)) or "plain"
            print(_row(name, mode, summary, classes, seconds), flush=True)


if __name__ == "__main__":
    main()
