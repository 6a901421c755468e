"""Does ``infer`` segment a smear the same at every magnification? Rescaled vs at the input's own size.

Synthetic smears (seeds 100.., 160 x 160 px at 1x) rendered with red cells 25, 50 and 75 px across
are segmented by ``predict_folder`` twice: with the default rescaling to the model's training scale
(each image's scale estimated) and with ``rescale=False`` (the baseline: the network at the input's
own pixels). Prints per-class Dice against the generator's truth for each magnification, and the
wall seconds of both runs with their ratio. With ``--real DIR`` it also segments the first
``--real-count`` images of DIR (e.g. BCCD's JPEGImages, red cells ~90 px) both ways and prints
seconds per image, the estimated red-cell diameters, and the white-cell connected components per
image (one white cell per BCCD image: fragments show a model that sees cells at the wrong size).

    python benchmarks/infer_rescale.py MODEL.pt [--real ../shared/datasets/BCCD/JPEGImages]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear
from medseg_dfl.engine.inference import InferenceOptions, predict_folder

ZOOMS = (1, 2, 3)
MODES = {"rescaled": True, "own size": False}


def dice(mask: np.ndarray, truth: np.ndarray, cls: int) -> float:
    a, b = mask == cls, truth == cls
    return float("nan") if not (a.any() or b.any()) else 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def synthetic(model: Path, work: Path, seeds: int) -> None:
    inputs, truth = work / "synthetic", {}
    inputs.mkdir()
    for zoom in ZOOMS:
        for seed in range(100, 100 + seeds):
            smear = make_smear(160 * zoom, seed, cell_diameter=25 * zoom)
            Image.fromarray(smear.image).save(inputs / f"z{zoom}_s{seed}.png")
            truth[f"z{zoom}_s{seed}"] = smear.label
    seconds = {}
    for mode, rescale in MODES.items():
        out = work / f"synthetic_{rescale}"
        start = time.perf_counter()
        predict_folder(model, inputs, out, InferenceOptions(device="cpu", rescale=rescale))
        seconds[mode] = time.perf_counter() - start
        for zoom in ZOOMS:
            scores = {c: [] for c in range(1, len(SMEAR_CLASSES))}
            for name in (n for n in truth if n.startswith(f"z{zoom}_")):
                mask = np.asarray(Image.open(out / f"{name}.png"))
                for cls in scores:
                    scores[cls].append(dice(mask, truth[name], cls))
            row = "  ".join(f"{SMEAR_CLASSES[c]} {np.nanmean(v):.3f}" for c, v in scores.items())
            print(f"{mode:9s} red cells {25 * zoom:3d} px: Dice {row}")
    print(f"synthetic, {len(truth)} images: rescaled {seconds['rescaled']:.1f} s, own size "
          f"{seconds['own size']:.1f} s, ratio {seconds['rescaled'] / seconds['own size']:.2f}")  # fmt: skip


def real(model: Path, work: Path, folder: Path, count: int) -> None:
    inputs = work / "real"
    inputs.mkdir()
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"))[:count]:
        (inputs / path.name).symlink_to(path.resolve())
    n = len(list(inputs.iterdir()))
    seconds = {}
    for mode, rescale in MODES.items():
        out = work / f"real_{rescale}"
        start = time.perf_counter()
        predict_folder(model, inputs, out, InferenceOptions(device="cpu", rescale=rescale))
        seconds[mode] = (time.perf_counter() - start) / n
        wbc = SMEAR_CLASSES.index("wbc")
        pieces = [ndimage.label(np.asarray(Image.open(p)) == wbc)[1] for p in sorted(out.glob("*.png"))]
        print(f"{mode:9s} real, {n} images: {seconds[mode]:.3f} s per image, white-cell components per image "
              f"median {np.median(pieces):.0f} (max {max(pieces)})")  # fmt: skip
    scales = json.loads((work / "real_True" / "scale.json").read_text())["images"].values()
    diameters = [s["cell_diameter_px"] for s in scales]
    print(f"real: estimated red cells {np.median(diameters):.1f} px (median; {min(diameters):.1f}-"
          f"{max(diameters):.1f}); time ratio rescaled / own size {seconds['rescaled'] / seconds['own size']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--real", type=Path, default=None, help="a folder of real smear images")
    parser.add_argument("--real-count", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="infer_rescale_") as tmp:
        synthetic(args.model, Path(tmp), args.seeds)
        if args.real is not None:
            real(args.model, Path(tmp), args.real, args.real_count)


if __name__ == "__main__":
    main()
