"""Choose the platelet rule on predictions a model did not train on (cross-fitting on BCCD ``train``).

A model's probabilities on its own training images are surer than on new ones, so a threshold
chosen there is too low for new smears. Here the rule is chosen on out-of-fold predictions: two
models, each trained on one half of ``train.txt``, predict the other half; the threshold on each
platelet's mean own-class probability (``InstanceParams.min_platelet_probability``) with the largest
platelet F1 over the 205 out-of-fold ``train`` images is the rule. The model trained on all of
``train.txt`` then gets that rule and is checked once on ``val.txt``.

    # 1. two half-folds of the bccd-masks data (symlinks and a dataset.json each; nothing copied)
    python benchmarks/platelet_rule.py folds data/bccd_masks folds/
    # 2. train each fold with the shipped model's command (twice its epochs: half its images)
    medseg-dfl train configs/blood_smear_bccd.yaml --set data.root=folds/a --set train.epochs=256 \\
        --set train.val_every=32 --output runs/fold_a       # and folds/b -> runs/fold_b
    # 3. the rule on the out-of-fold train images (the fold's validation list is what it did not train on)
    python benchmarks/platelet_rule.py choose runs/fold_a/last.pt=folds/a runs/fold_b/last.pt=folds/b
    # 4. the released model with that rule, once on val (and a few rules beside it, for the table)
    python benchmarks/platelet_rule.py score medseg_dfl/models/blood_smear.pt --split val --thresholds 0 0.74

Each image is counted once (``count``'s path with no platelet rule, mirroring TTA on as in ``count``);
every threshold then drops the platelets below it and matches the rest to BCCD's boxes as
``bccd_counts.py`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from bccd_counts import DEFAULT_DATA, instance_centroids, read_boxes
from bccd_reference import assign
from scipy import ndimage

from medseg_dfl.engine.counting import CountOptions, SmearCounter
from medseg_dfl.io.atomic import write_text

GRID = tuple(round(t, 2) for t in np.arange(0.0, 0.96, 0.01))


def platelet_records(counter: SmearCounter, data: Path, names: list[str]) -> list[dict]:
    """Per image: the boxes, every found cell (kind, x, y) and each platelet's mean probability."""
    options = CountOptions(rule_overrides={"min_platelet_probability": 0.0})
    records = []
    for name in names:
        image, xml = data / "JPEGImages" / f"{name}.jpg", data / "Annotations" / f"{name}.xml"
        if not image.is_file() or not xml.is_file():
            continue
        result = counter.count(image, options)
        # A second network pass: count() keeps its probabilities to itself (the same image, scale and weights).
        probabilities = counter.probabilities(result.rgb, result.scale)[0].numpy()
        cells = result.cells
        own = np.take_along_axis(probabilities, cells.classes[cells.labels][None], axis=0)[0]
        means = ndimage.mean(own, cells.labels, np.arange(1, cells.count + 1)) if cells.count else []
        records.append({"boxes": read_boxes(xml), "cells": instance_centroids(cells),
                        "means": [float(m) for m in np.atleast_1d(means)]})  # fmt: skip
    return records


def platelet_scores(records: list[dict], threshold: float) -> dict[str, float]:
    """Platelet precision, recall, F1 and count MAE with platelets below ``threshold`` dropped."""
    found = matched = boxed = 0
    errors = []
    for record in records:
        cells = [c for c, m in zip(record["cells"], record["means"], strict=True)
                 if c[0] != "platelet" or m >= threshold]  # fmt: skip
        boxes = record["boxes"]
        matches = assign(cells, boxes)[0]
        kinds = [c[0] for c in cells]
        n_found = sum(k == "platelet" for k in kinds)
        n_boxes = sum(b[0] == "platelet" for b in boxes)
        found += n_found
        boxed += n_boxes
        matched += sum(k == "platelet" and m is not None for k, m in zip(kinds, matches, strict=True))
        errors.append(abs(n_found - n_boxes))
    precision = matched / found if found else float("nan")
    recall = matched / boxed if boxed else float("nan")
    f1 = 2 * matched / (found + boxed) if found + boxed else 0.0  # = 2PR / (P + R), 0 when nothing is found
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1, "mae": float(np.mean(errors))}


def split_names(data: Path, split: str) -> list[str]:
    path = data / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise SystemExit(f"BCCD split list not found: {path}")
    return [n.strip() for n in path.read_text().split() if n.strip()]


def make_folds(masks: Path, out: Path) -> None:
    """Two half-folds of a ``datasets fetch bccd-masks`` folder: a trains on the odd-numbered
    training entries and lists the even ones as its validation, b the other way round."""
    spec = json.loads((masks / "dataset.json").read_text())
    training = spec["training"]
    halves = {"a": (training[1::2], training[0::2]), "b": (training[0::2], training[1::2])}
    for fold, (train, held_out) in halves.items():
        root = out / fold
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("images", "labels"):
            if not (root / sub).exists():
                (root / sub).symlink_to((masks / sub).resolve())
        fold_spec = {**spec, "training": train, "validation": held_out, "numTraining": len(train),
                     "numValidation": len(held_out), "test": [], "numTest": 0}  # fmt: skip
        write_text(root / "dataset.json", json.dumps(fold_spec, indent=1))
        print(f"{root}: {len(train)} training, {len(held_out)} held out")


def held_out_names(fold_root: Path) -> list[str]:
    spec = json.loads((fold_root / "dataset.json").read_text())
    return [Path(entry["image"]).stem for entry in spec["validation"]]


def print_table(rows: list[dict], label: str) -> None:
    print(f"\n{label}\n| threshold | platelet P | platelet R | F1 | platelet MAE |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['mae']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    folds = sub.add_parser("folds", help="write two half-folds of a bccd-masks folder")
    folds.add_argument("masks", type=Path)
    folds.add_argument("out", type=Path)
    choose = sub.add_parser("choose", help="the threshold of largest out-of-fold platelet F1")
    choose.add_argument("pairs", nargs="+", help="CHECKPOINT=FOLD_ROOT (the fold's validation list is held out)")
    choose.add_argument("--data", type=Path, default=DEFAULT_DATA)
    score = sub.add_parser("score", help="one model on a split at the given thresholds")
    score.add_argument("model", type=Path)
    score.add_argument("--split", default="val")
    score.add_argument("--thresholds", type=float, nargs="+", default=[0.0])
    score.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if args.command == "folds":
        make_folds(args.masks, args.out)
        return
    if args.command == "choose":
        records = []
        for pair in args.pairs:
            checkpoint, fold_root = pair.split("=", 1)
            names = held_out_names(Path(fold_root))
            records += platelet_records(SmearCounter.from_checkpoint(checkpoint, "cpu"), args.data, names)
        rows = [platelet_scores(records, t) for t in GRID]
        print_table(rows[::5], f"out-of-fold BCCD train, {len(records)} images (every 0.05 shown)")
        best = max(rows, key=lambda r: (r["f1"], -r["threshold"]))
        print(f"\nchosen: {best['threshold']:.2f} (largest out-of-fold platelet F1 {best['f1']:.3f}; "
              f"P {best['precision']:.3f}, R {best['recall']:.3f}, MAE {best['mae']:.2f})")  # fmt: skip
    else:
        names = split_names(args.data, args.split)
        records = platelet_records(SmearCounter.from_checkpoint(args.model, "cpu"), args.data, names)
        print_table([platelet_scores(records, t) for t in args.thresholds], f"{args.model}, BCCD {args.split}, {len(records)} images")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
