"""Training data for the "varied synthetic smears" experiment (not the sample data).

Writes ``OUT/images``, ``OUT/labels``, ``OUT/instances``, ``OUT/cells.csv`` and ``OUT/dataset.json``
(24 training, 6 validation fields of 256 x 256 px, like ``sample_data/blood_smear``): the same as
``medseg-dfl sample-data OUT --variety --instances`` (monocytes, a wider range of platelet sizes,
platelet clumps, focus blur up to 2.5 px, each field at a random magnification with red cells 20-32
px across, so the network also sees the scale estimate's typical error).

    python benchmarks/varied_smears.py /tmp/varied
    medseg-dfl train configs/blood_smear_2d.yaml --set data.root=/tmp/varied --output /tmp/run_varied
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg_dfl.data.synthetic import generate_sample_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--validation", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 <= args.validation < args.count:
        raise SystemExit(f"--validation must be in [0, --count), got {args.validation}")
    generate_sample_data(args.out, "blood-smear", args.count, 256, args.seed, args.validation / args.count,
                         variety=True, instances=True)  # fmt: skip
    print(f"{args.count} fields -> {args.out}")


if __name__ == "__main__":
    main()
