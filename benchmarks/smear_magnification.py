"""Does ``count`` give the same answer at every magnification? Synthetic smears at 1x, 2x, 3.6x.

The same synthetic fields (seeds 100-109, layout fixed, textures redrawn) are rendered with red
cells 25, 50 and 90 px across and counted with a trained model: with the scale estimated from each
image (the input resampled to the model's scale and the result back), and, as the baseline, fed to
the network as they are. Truth: the generator's instance map (a red cell when at least
``InstanceParams.min_rbc`` of a red cell's area is in view, as the counter). Prints found/true counts
per class, the scale estimate's error, and the pixel agreement of the masks after resampling to 1x.

    python benchmarks/smear_magnification.py /tmp/demo_run/best.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medseg_dfl.cells.instances import InstanceParams, label_instances
from medseg_dfl.cells.scale import CellScale, resolve_scale
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear
from medseg_dfl.engine.counting import SmearCounter

KINDS = ("rbc", "wbc", "platelet")


def truth_counts(smear) -> dict[str, int]:
    """The generator's cells in view (its instance map), counted as the counter keeps them."""
    area = np.pi * smear.cell_diameter**2 / 4
    visible = np.bincount(smear.instances.ravel(), minlength=smear.instance_class.size)
    least = {"rbc": InstanceParams().min_rbc * area, "wbc": 1, "platelet": 1}
    return {kind: int((visible[smear.instance_class == SMEAR_CLASSES.index(kind)] >= least[kind]).sum())
            for kind in KINDS}  # fmt: skip


def run(counter: SmearCounter, zoom: float, seeds: range, rescale: bool) -> tuple[dict, list, list]:
    totals = {k: [0, 0] for k in KINDS}
    masks, errors = [], []
    for seed in seeds:
        smear = make_smear(round(192 * zoom), seed, cell_diameter=25 * zoom)
        rgb = smear.image.astype(np.float32)
        scale = resolve_scale(rgb) if rescale else CellScale(counter.model_diameter, None, "as is")
        errors.append(scale.cell_diameter_px / smear.cell_diameter - 1)
        mask, _ = counter.segment(rgb, scale)
        found = label_instances(mask, SMEAR_CLASSES, smear.cell_diameter if not rescale else scale.cell_diameter_px)
        truth = truth_counts(smear)
        for kind in KINDS:
            totals[kind][0] += found.counts()[kind]
            totals[kind][1] += truth[kind]
        masks.append(mask)
    return totals, masks, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    counter = SmearCounter.from_checkpoint(args.model, "cpu")
    seeds = range(100, 100 + args.seeds)
    print(f"model red cells {counter.model_diameter:.1f} px ({counter.model_scale_source}); {args.seeds} fields\n")
    print("| magnification | input | scale error (mean, worst) | rbc found/true | wbc found/true | "
          "platelets found/true | mask agreement with 1x |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = None
    for zoom in (1.0, 2.0, 3.6):
        for rescale in (True, False) if zoom > 1 else (True,):
            totals, masks, errors = run(counter, zoom, seeds, rescale)
            if base is None:
                base = masks
            agree = []
            for small, big in zip(base, masks, strict=True):
                idx = np.arange(small.shape[0]) * big.shape[0] // small.shape[0]
                agree.append(float((big[np.ix_(idx, idx)] == small).mean()))
            how = "resampled to the model's scale" if rescale else "as is (no scale)"
            err = f"{100 * np.mean(errors):+.1f} %, {100 * max(errors, key=abs):+.1f} %" if rescale else "-"
            counts = " | ".join(f"{totals[k][0]}/{totals[k][1]}" for k in KINDS)
            print(f"| {zoom:g}x ({25 * zoom:g} px) | {how} | {err} | {counts} | {100 * np.mean(agree):.1f} % |")


if __name__ == "__main__":
    main()
