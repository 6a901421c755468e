"""GPU check (issue 21): the hippocampus end to end on one device, and the compiled loss, in one table.

    python benchmarks/gpu_check.py                      # CUDA (scripts/gpu_check.sh sets up and calls this)
    python benchmarks/gpu_check.py --device cpu --quick  # the same path on a CPU in a few minutes

Stages, each through the CLI in its own process (as a user runs them), timed, with its peak memory
(CUDA: ``torch.cuda.max_memory_allocated`` of that process; CPU: its peak RSS):

1. ``medseg-dfl datasets fetch hippocampus --from ../shared/datasets/Task04_Hippocampus`` (kept
   across re-runs in ``--work``);
2. ``medseg-dfl plan --time-budget 3`` (``--quick``: no timing, 1 epoch of 2 steps);
3. ``medseg-dfl train`` (``train.amp: true``: float16 autocast on CUDA, bfloat16 on a CPU with
   native support); step time from train.log (seconds per step of each epoch, validation included);
4. ``medseg-dfl infer --half`` on the validation volumes of the fetched dataset.json;
5. ``medseg-dfl evaluate`` of those predictions: mean Dice per class.

Then the Dual Focal Loss (``medseg_dfl/losses/compiled.py``, compiled kernels at these sizes)
against ``F.cross_entropy`` and MONAI's ``FocalLoss`` (forward + backward, median of rounds, the
three taking turns; ``benchmarks/loss_speed.py``'s timing) at (8,4,256,256) and (2,3,96,96,96).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import math
import os
import resource
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "Task04_Hippocampus"
CLASSES = ["background", "Anterior", "Posterior"]
LOSS_SHAPES = [(8, 4, 256, 256), (2, 3, 96, 96, 96)]
QUICK_LOSS_SHAPES = [(2, 4, 64, 64), (1, 3, 24, 24, 24)]


def _write_peak(path: str) -> None:
    """At exit of a stage's process: its peak memory (MiB) as JSON."""
    torch = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    peak = {"cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    Path(path).write_text(json.dumps(peak), encoding="utf-8")


def _cli_in_this_process(peak_file: str, argv: list[str]) -> None:
    """``python gpu_check.py --stage PEAK_FILE -- ARGS``: run ``medseg-dfl ARGS`` here, record the peak."""
    atexit.register(_write_peak, peak_file)
    sys.argv = ["medseg-dfl", *argv]
    runpy.run_module("medseg_dfl.cli", run_name="__main__")


def run_stage(name: str, argv: list[str], work: Path, log: list[str]) -> dict:
    """One CLI command in its own process: wall seconds, peak memory; output kept in work/NAME.log."""
    peak_file = work / f"{name}.peak.json"
    peak_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", str(peak_file), "--", *argv]
    print(f"[gpu_check] {name}: medseg-dfl {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, encoding="utf-8", errors="replace",
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    seconds = time.perf_counter() - start
    (work / f"{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{name} failed (exit {done.returncode}); last lines:\n{tail}")
    log.append(f"{name}: {seconds:.1f} s")
    peak = json.loads(peak_file.read_text(encoding="utf-8")) if peak_file.exists() else {}
    return {"seconds": seconds, **peak}


def step_seconds(train_log: Path) -> tuple[float, int]:
    """Median seconds per training step over the epochs of a run's train.log (validation included)
    and the number of epochs; the first epoch (warm-up, cuDNN autotuning) is left out when there are more."""
    per_step = []
    for line in train_log.read_text(encoding="utf-8").splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "steps" in fields and "seconds" in fields and int(fields["steps"]) > 0:
            per_step.append(float(fields["seconds"]) / int(fields["steps"]))
    timed = per_step[1:] if len(per_step) > 1 else per_step
    timed.sort()
    return (timed[len(timed) // 2] if timed else math.nan), len(per_step)


def best_val_dice(metrics_csv: Path) -> float:
    with metrics_csv.open(encoding="utf-8", newline="") as f:
        scores = [float(row["mean_fg_dice"]) for row in csv.DictReader(f)]
    finite = [s for s in scores if not math.isnan(s)]
    return max(finite) if finite else math.nan


def mean_dice(report_json: Path) -> dict[str, float]:
    summary = json.loads(report_json.read_text(encoding="utf-8"))["summary"]
    return {name: float(stats["dice"]["mean"]) for name, stats in summary.items()}


def link_validation(data_dir: Path, out: Path, limit: int | None) -> int:
    """out/images and out/labels: links to the dataset.json validation pairs; how many."""
    from medseg_dfl.io.dataset_json import read_dataset_json

    pairs = read_dataset_json(data_dir)["validation"][:limit]
    for side in ("image", "label"):
        folder = out / f"{side}s"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for pair in pairs:
            source = (data_dir / pair[side]).resolve()
            (folder / source.name).symlink_to(source)
    return len(pairs)


def loss_times(device_name: str, shapes: list[tuple[int, ...]], repeats: int) -> list[dict]:
    """Median forward+backward ms of cross entropy, MONAI Focal and the DFL per shape (labels target)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loss_speed import _inputs, _losses, _peak_mib, _step, _time_all

    device = torch.device(device_name)
    rows = []
    for shape in shapes:
        logits, target = _inputs(shape, device, onehot=False)
        losses = {k: v for k, v in _losses(onehot=False, plain=False).items() if k != "dfl_eager"}
        steps = {name: _step(fn, logits, target) for name, fn in losses.items()}
        start = time.perf_counter()
        steps["dfl"]()  # compiles (or reads Inductor's on-disk cache) at the first large call
        first = time.perf_counter() - start
        times = _time_all(steps, {"fp32": lambda: torch.autocast("cpu", enabled=False)}, device, repeats)
        rows.append({"shape": shape, "first_dfl_s": first, **{n: times["fp32", n] for n in steps},
                     **{f"peak_{n}": _peak_mib(s, device) for n, s in steps.items()}})  # fmt: skip
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_table(stages: dict[str, dict], losses: list[dict], device: str) -> None:
    mem = "peak CUDA MiB" if device == "cuda" else "peak RSS MiB"
    print(f"\n{'stage':24s} {'wall s':>8s} {'s/step':>7s} {'Dice':>28s} {mem:>14s}")
    for name, row in stages.items():
        peak = row.get("cuda_mib") if device == "cuda" else row.get("rss_mib")
        print(f"{name:24s} {_fmt(row.get('seconds')):>8s} {_fmt(row.get('step_s'), 3):>7s} "
              f"{row.get('dice', '-'):>28s} {_fmt(peak, 0):>14s}")  # fmt: skip
    print(f"\n{'loss fwd+bwd, labels':24s} {'CE ms':>8s} {'Focal ms':>9s} {'DFL ms':>8s} {'DFL/CE':>7s} "
          f"{'DFL/Focal':>9s} {'DFL 1st call s':>14s} {'peak MiB CE/Focal/DFL':>22s}")
    for row in losses:
        ce, focal, dfl = row["cross_entropy"], row["monai_focal"], row["dfl"]
        peaks = "/".join(_fmt(row[f"peak_{n}"], 0) for n in ("cross_entropy", "monai_focal", "dfl"))
        print(f"{str(tuple(row['shape'])):24s} {ce:8.2f} {focal:9.2f} {dfl:8.2f} {dfl / ce:7.2f} {dfl / focal:9.2f} "
              f"{row['first_dfl_s']:14.1f} {peaks:>22s}")  # fmt: skip
    print("targets: DFL <= 2x CE and <= 1x Focal (issue 13); train/infer/evaluate finish without error")


def _pipeline(args: argparse.Namespace, work: Path) -> dict[str, dict]:
    data, run, log = work / "hippocampus", work / "run", []
    stages: dict[str, dict] = {}
    if not (data / "dataset.json").is_file():
        stages["fetch"] = run_stage("fetch", ["datasets", "fetch", "hippocampus", str(data), "--from", str(args.data),
                                              "--quiet"], work, log)  # fmt: skip
    config = work / "hippocampus.yaml"
    plan = ["plan", str(data), "-o", str(config), "--overwrite", "--device", args.device, "--set",
            f"experiment.name=gpu_check_{args.device}"]  # fmt: skip
    plan += (["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2"] if args.quick
             else ["--time-budget", str(args.time_budget)])  # fmt: skip
    stages["plan"] = run_stage("plan", plan, work, log)
    shutil.rmtree(run, ignore_errors=True)
    stages["train (amp)"] = row = run_stage("train", ["train", str(config), "-o", str(run), "--device", args.device,
                                                      "--no-progress"], work, log)  # fmt: skip
    row["step_s"], epochs = step_seconds(run / "train.log")
    row["dice"] = f"val best {best_val_dice(run / 'metrics.csv'):.3f} ({epochs} ep)"
    cases = link_validation(data, work / "val", 4 if args.quick else None)
    pred = work / "pred"
    shutil.rmtree(pred, ignore_errors=True)
    stages[f"infer --half ({cases})"] = run_stage("infer", ["infer", str(run / "best.pt"), str(work / "val" / "images"),
                                                            str(pred), "--half", "--device", args.device], work, log)  # fmt: skip
    row = stages["evaluate"] = run_stage("evaluate", ["evaluate", str(pred), str(work / "val" / "labels"), "--classes",
                                                      ",".join(CLASSES), "-o", str(work / "report.csv")], work, log)  # fmt: skip
    row["dice"] = " ".join(f"{k[:4]} {v:.3f}" for k, v in mean_dice(work / "report.json").items())
    return stages


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--stage":  # a stage's own process (run_stage)
        _cli_in_this_process(sys.argv[2], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="1 epoch of 2 steps, 4 volumes, small loss shapes")
    parser.add_argument("--data", type=Path, default=DATA, help="Task04_Hippocampus folder or tar")
    parser.add_argument("--work", type=Path, default=ROOT / "gpu_check_work", help="scratch folder (kept)")
    parser.add_argument("--time-budget", type=float, default=3.0, help="plan --time-budget (minutes of training)")
    parser.add_argument("--repeats", type=int, default=5, help="loss timing rounds")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the loss timings")
    args = parser.parse_args()
    import torch

    print(f"[gpu_check] torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("[gpu_check] torch sees no CUDA device (a CPU-only build?); scripts/gpu_check.sh installs a CUDA one")
    start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    stages = {} if args.skip_pipeline else _pipeline(args, args.work)
    print("[gpu_check] loss timings", flush=True)
    losses = loss_times(args.device, QUICK_LOSS_SHAPES if args.quick else LOSS_SHAPES, 2 if args.quick else args.repeats)
    print_table(stages, losses, args.device)
    print(f"[gpu_check] total {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}; logs in {args.work}")


if __name__ == "__main__":
    main()
