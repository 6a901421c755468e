"""Training data for the "varied synthetic smears" experiment of docs/results/bccd (not the sample data).

Writes ``OUT/images``, ``OUT/labels`` and ``OUT/dataset.json`` (24 training, 6 validation fields of
256 x 256 px, like ``sample_data/blood_smear``) rendered with ``make_smear(..., variety=True)``
(monocytes, larger platelets, platelet clumps, focus blur up to 2.5 px) and each field at a random
magnification (red cells 20-32 px), so the network also sees the scale estimate's typical error.

    python benchmarks/varied_smears.py /tmp/varied
    medseg-dfl train configs/blood_smear_2d.yaml --set data.root=/tmp/varied --output /tmp/run_varied
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from medseg_dfl.data.synthetic import sample_seed
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear
from medseg_dfl.io.atomic import write_bytes, write_json


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--validation", type=int, default=6)
    args = parser.parse_args()
    diameters = np.random.default_rng(7).uniform(20, 32, args.count)
    entries = []
    for i, diameter in enumerate(diameters):
        smear = make_smear(256, sample_seed(0, "blood-smear", i), cell_diameter=float(diameter), variety=True)
        name = f"smear_{i:03d}.png"
        write_bytes(args.out / "images" / name, _png(smear.image))
        write_bytes(args.out / "labels" / name, _png(smear.label))
        entries.append({"image": f"images/{name}", "label": f"labels/{name}"})
    split = args.count - args.validation
    write_json(args.out / "dataset.json", {
        "labels": {str(i): name for i, name in enumerate(SMEAR_CLASSES)},
        "training": entries[:split], "validation": entries[split:],
    })  # fmt: skip
    print(f"{args.count} fields -> {args.out}")


if __name__ == "__main__":
    main()
