"""How fast the CLI answers an argument/path error, against importing torch + MONAI (what it did
before checking paths). Prints wall and CPU seconds (median of --repeats) and their ratio.

    python benchmarks/cli_startup.py --repeats 5

CPU seconds (user + sys of the child) are the figure to trust on a loaded machine: wall time
there includes waiting for a core.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "infer (missing checkpoint)": ["-m", "medseg_dfl.cli", "infer", "/nonexistent.pt", "/nonexistent", "/tmp/o"],
    "train (missing config)": ["-m", "medseg_dfl.cli", "train", "/nonexistent.yaml"],
    "preprocess (missing folder)": ["-m", "medseg_dfl.cli", "preprocess", "/nonexistent", "/tmp/o"],
    "evaluate (missing folder)": ["-m", "medseg_dfl.cli", "evaluate", "/nonexistent", "/tmp"],
    "baseline: import torch + monai": ["-c", "import torch, monai.transforms"],
}


def _measure(args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    results = {}
    for _ in range(repeats):  # take turns, so load changes hit every command alike
        for name, args in COMMANDS.items():
            results.setdefault(name, []).append(_measure(args))
    base_wall, base_cpu = (statistics.median(x[i] for x in results["baseline: import torch + monai"]) for i in (0, 1))
    print(f"{'command':34s} {'wall s':>8s} {'cpu s':>8s} {'cpu vs baseline':>16s}")
    for name, values in results.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{name:34s} {wall:8.2f} {cpu:8.2f} {cpu / base_cpu:15.2f}x")
    print(f"(median of {repeats}; baseline wall {base_wall:.2f} s)")


if __name__ == "__main__":
    main()
