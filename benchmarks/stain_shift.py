"""How much does a WBC model lose when the stain, palette or scale of the images changes?

Scores checkpoints on the validation images of a converted WBC folder (``medseg-dfl datasets fetch
wbc``: images/ + labels/ + dataset.json) as they are and under stain shifts that stand in for another
lab's scanner and stain (the real other-lab images are not in ../shared):

- ``hed``: every image's haematoxylin/eosin/DAB optical densities scaled by U(0.6, 1.4) and shifted
  by U(-0.03, 0.03) (seeded per image; wider than the training jitter, U(0.75, 1.25) / 0.05);
- ``bccd``: Reinhard colour transfer to the CIE-Lab mean/std of the BCCD smears (another lab,
  another stain, JPEG; ``--bccd`` folder);
- ``x0.75`` / ``x1.33``: image rescaled (label rescaled with nearest neighbour);
- ``bccd+x0.8+blur``: the BCCD palette, rescaled by 0.8 and blurred (sigma 1): a harder "other lab".

Prints one markdown table: per shift and checkpoint, the mean cytoplasm and nucleus Dice over the
images (a class absent from both prediction and truth is skipped) and the drop from in-domain.

    python benchmarks/stain_shift.py runs/wbc_base/best.pt runs/wbc_stain/best.pt \\
        --data /tmp/real/wbc --bccd ../shared/datasets/BCCD/JPEGImages
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.filters import gaussian
from skimage.transform import rescale

from medseg_dfl.engine.inference import Predictor
from medseg_dfl.stain import hed_shift, lab_statistics, reinhard_transfer

Shift = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _hed(image: np.ndarray, label: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    chw = np.moveaxis(image, -1, 0).astype(np.float32)
    out = hed_shift(chw, rng.uniform(0.6, 1.4, 3), rng.uniform(-0.03, 0.03, 3))
    return np.clip(np.moveaxis(out, 0, -1) + 0.5, 0, 255).astype(np.uint8), label


def _rescaled(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    img = rescale(image, factor, channel_axis=-1, preserve_range=True, anti_aliasing=factor < 1, order=1)
    lab = rescale(label, factor, preserve_range=True, anti_aliasing=False, order=0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), lab.astype(np.uint8)


def make_shifts(bccd_stats: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Shift]:
    shifts: dict[str, Shift] = {
        "in-domain": lambda i, lab, s: (i, lab),
        "hed": _hed,
        "x0.75": lambda i, lab, s: _rescaled(i, lab, 0.75),
        "x1.33": lambda i, lab, s: _rescaled(i, lab, 1.33),
    }
    if bccd_stats is not None:
        mean, std = bccd_stats

        def bccd(i: np.ndarray, lab: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
            return reinhard_transfer(i, mean, std), lab

        def other_lab(i: np.ndarray, lab: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
            img, lab = _rescaled(reinhard_transfer(i, mean, std), lab, 0.8)
            blurred = gaussian(img.astype(np.float64), sigma=1.0, channel_axis=-1, preserve_range=True)
            return np.clip(blurred + 0.5, 0, 255).astype(np.uint8), lab

        shifts["bccd"] = bccd
        shifts["bccd+x0.8+blur"] = other_lab
    return shifts


def dice_per_class(pred: np.ndarray, truth: np.ndarray, classes: int) -> list[float]:
    out = []
    for c in range(1, classes):
        p, t = pred == c, truth == c
        total = p.sum() + t.sum()
        out.append(float("nan") if total == 0 else 2.0 * float((p & t).sum()) / float(total))
    return out


def validation_cases(data: Path, limit: int | None) -> list[tuple[Path, Path]]:
    meta = json.loads((data / "dataset.json").read_text())
    cases = [(data / e["image"], data / e["label"]) for e in meta["validation"]]
    return cases[:limit] if limit else cases


def score(predictor: Predictor, cases: list[tuple[Path, Path]], shift: Shift, workdir: Path) -> np.ndarray:
    classes = len(predictor.class_names)
    scores = []
    for index, (image_path, label_path) in enumerate(cases):
        image = np.asarray(Image.open(image_path).convert("RGB"))
        label = np.asarray(Image.open(label_path))
        image, label = shift(image, label, index)
        path = workdir / f"{index:04d}.png"
        Image.fromarray(image).save(path)
        # 2D masks are rows first (height, width), as the PIL-read label
        scores.append(dice_per_class(predictor.predict_file(path).mask, label, classes))
    return np.nanmean(np.array(scores), axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="converted WBC folder (dataset.json)")
    parser.add_argument("--bccd", type=Path, default=None, help="folder of BCCD JPEGs (palette source)")
    parser.add_argument("--bccd-images", type=int, default=40, help="BCCD images for the palette statistics")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation images")
    args = parser.parse_args()

    stats = None
    if args.bccd is not None:
        files = sorted(args.bccd.glob("*.jpg"))[: args.bccd_images]
        stats = lab_statistics([np.asarray(Image.open(f).convert("RGB")) for f in files])
    cases = validation_cases(args.data, args.limit)
    shifts = make_shifts(stats)
    predictors = {str(c): Predictor.from_checkpoint(c, "cpu") for c in args.checkpoints}
    results: dict[tuple[str, str], np.ndarray] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, shift in shifts.items():
            for key, predictor in predictors.items():
                results[name, key] = score(predictor, cases, shift, Path(tmp))
    names = list(predictors)
    print(f"{len(cases)} validation images of {args.data}; {time.perf_counter() - start:.0f} s")
    for i, key in enumerate(names):
        print(f"model {i + 1}: {key}")
    head = " | ".join(f"m{i + 1} cytoplasm | m{i + 1} nucleus" for i in range(len(names)))
    print(f"\n| shift | {head} |\n|---|" + "---|" * (2 * len(names)))
    for name in shifts:
        cells = []
        for key in names:
            base, now = results["in-domain", key], results[name, key]
            cells += [f"{v:.3f}" + ("" if name == "in-domain" else f" ({v - b:+.3f})") for v, b in zip(now, base, strict=True)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
