"""Forward + backward speed and memory of the Dual Focal Loss against MONAI's FocalLoss and
F.cross_entropy, all measured in the same run, at 1 thread and the default thread count, on an idle
machine and with a competing process.

    python benchmarks/loss_speed.py                      # CPU: 1 thread / default x idle / loaded
    python benchmarks/loss_speed.py --repeats 9 --shapes 8,4,256,256
    python benchmarks/loss_speed.py --device cuda        # CUDA: fp32 and bf16 autocast

A plain process: the script sets no OpenMP or MKL environment variable and prints the OpenMP wait
policy it found (unset = libgomp's default, which spins at every barrier for a while, the setting a
user gets in their own training script). "Loaded" = a competitor process (torch matmuls on
``--competitor-threads`` threads, like a data-loader worker or a second job) runs on the cores; it
is paused for the "idle" columns and resumed for the "loaded" ones (a flag file), and exits by
itself after ``--competitor-seconds`` or when this script ends, however it ends. Every configuration takes
turns with the others round by round, so a machine whose load changes slows them all alike; the
tables give medians.

Losses: labels B,1,spatial ("labels" target; DFL/Focal with ``to_onehot_y=True``, CE with class
indices) and a one-hot B,C,spatial target ("one-hot"; CE with probabilities). ``dfl`` = the
default ``DualFocalLoss`` (compiled kernels for these sizes, see losses/compiled.py), ``dfl_eager``
= ``compiled=False`` (the closed-form autograd.Function), ``dfl_plain`` (``--plain``) = the plain
autograd formula the tests compare against. Each shape starts from a fresh ``torch.compile`` state
(``torch.compiler.reset()``, as a training run with one patch size); the first-call time (compile,
or load from Inductor's on-disk cache) is printed separately.

Memory: "kept MiB" = the tensors autograd keeps from forward to backward (unique storages, counted
with ``torch.autograd.graph.saved_tensors_hooks``, inputs excluded). On CUDA also "peak MiB", the
rise of ``torch.cuda.max_memory_allocated`` during one forward + backward.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.losses import FocalLoss

from medseg_dfl.losses import DualFocalLoss, dual_focal_loss

SHAPES = ((8, 4, 256, 256), (2, 3, 96, 96, 96))
COMPETITOR = """
import os, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
flag, parent, end = sys.argv[3], os.getppid(), time.time() + float(sys.argv[2])
a = torch.randn(384, 384)
while time.time() < end and os.getppid() == parent:  # ends with its time cap or its parent
    if os.path.exists(flag):
        for _ in range(20):
            a = torch.tanh(a @ a)
    else:
        time.sleep(0.01)
"""

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _losses(onehot: bool, plain: bool) -> dict[str, Callable]:
    def dfl_plain(logits, target):  # the autograd reference path the tests compare against
        y = target if onehot else torch.zeros_like(logits).scatter_(1, target, 1.0)
        return dual_focal_loss(logits, y, fused=False)

    losses = {
        "cross_entropy": (lambda z, y: F.cross_entropy(z, y)) if onehot else (lambda z, t: F.cross_entropy(z, t[:, 0])),
        "monai_focal": FocalLoss(to_onehot_y=not onehot, use_softmax=True),
        "dfl": DualFocalLoss(to_onehot_y=not onehot),
        "dfl_eager": DualFocalLoss(to_onehot_y=not onehot, compiled=False),
    }
    if plain:
        losses["dfl_plain"] = dfl_plain
    return losses


class Competitor:
    """A process that keeps ``threads`` cores busy while its flag file exists (paused otherwise);
    it exits after ``seconds`` or as soon as this process is gone."""

    def __init__(self, threads: int, seconds: float) -> None:
        self.flag = os.path.join(tempfile.mkdtemp(prefix="loss_speed_"), "run")
        self.process = subprocess.Popen([sys.executable, "-c", COMPETITOR, str(threads), str(seconds), self.flag])
        time.sleep(3.0)  # its imports

    def pause(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.flag)

    def resume(self) -> None:
        open(self.flag, "w").close()

    def stop(self) -> None:
        self.pause()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        os.rmdir(os.path.dirname(self.flag))


def _configs(device: torch.device, competitor: Competitor | None) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """Name -> a context that puts the process in that configuration."""
    if device.type == "cuda":
        return {"fp32": contextlib.nullcontext, "bf16 autocast": lambda: torch.autocast("cuda", dtype=torch.bfloat16)}
    default_threads = torch.get_num_threads()

    @contextlib.contextmanager
    def cpu(threads: int, loaded: bool):
        torch.set_num_threads(threads)
        if competitor is not None:
            competitor.resume() if loaded else competitor.pause()
            time.sleep(0.05)
        yield

    loads = (False, True) if competitor is not None else (False,)
    return {
        f"{threads} thr {'loaded' if loaded else 'idle'}": (lambda t=threads, ld=loaded: cpu(t, ld))
        for loaded in loads
        for threads in dict.fromkeys((1, default_threads))
    }


def _step(loss_fn, logits: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def step() -> None:  # the gradient is returned, not kept in .grad: each step starts from the same memory
        z = logits
        if torch.is_autocast_enabled(logits.device.type):  # as a network's output under autocast
            z = logits.to(torch.get_autocast_dtype(logits.device.type))
        torch.autograd.grad(loss_fn(z, target), logits)

    return step


def _time_all(steps, configs, device: torch.device, repeats: int) -> dict[tuple[str, str], float]:
    """Median ms per (config, loss); configs and losses take turns within each round."""
    times: dict[tuple[str, str], list[float]] = {(c, n): [] for c in configs for n in steps}
    for round_ in range(repeats + 1):  # one warm-up round
        for config, enter in configs.items():
            with enter():
                for name, step in steps.items():
                    _sync(device)
                    start = time.perf_counter()
                    step()
                    _sync(device)
                    if round_ >= 1:
                        times[config, name].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def _kept_mib(loss_fn, logits: torch.Tensor, target: torch.Tensor) -> float:
    """Tensors autograd keeps from forward to backward (unique storages; the inputs excluded)."""
    inputs = {logits.untyped_storage().data_ptr(), target.untyped_storage().data_ptr()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(logits, target)
    torch.autograd.grad(loss, logits)
    return sum(saved.values()) / 2**20


def _peak_mib(step: Callable[[], None], device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _inputs(shape: tuple[int, ...], device: torch.device, onehot: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=gen).to(device).requires_grad_()
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=gen).to(device)
    return logits, (torch.zeros_like(logits).scatter_(1, labels, 1.0).detach() if onehot else labels)


def _first_calls(losses, logits, target, configs) -> str:
    parts = []
    for config, enter in configs.items():
        with enter():
            start = time.perf_counter()
            _step(losses["dfl"], logits, target)()
            parts.append(f"{config}: {time.perf_counter() - start:.1f} s")
    return "dfl first call (compile or on-disk cache) " + ", ".join(parts)


def _print_table(times, configs, losses, kept, peak) -> None:
    head = "".join(f"{c:>24}" for c in configs)
    print(f"  {'':<14}{head}{'kept MiB':>10}{'peak MiB':>10}")
    print(f"  {'loss':<14}" + f"{'ms   xCE  xFocal':>24}" * len(configs))
    for name in losses:
        cells = "".join(
            f"{times[c, name]:>11.1f}{times[c, name] / times[c, 'cross_entropy']:>6.2f}"
            f"{times[c, name] / times[c, 'monai_focal']:>7.2f}"
            for c in configs
        )
        print(f"  {name:<14}{cells}{kept[name]:>10.1f}{peak[name]:>10.1f}")


def run(device: torch.device, shapes, repeats: int, competitor: Competitor | None, plain: bool) -> None:
    configs = _configs(device, competitor)
    for shape in shapes:
        torch.compiler.reset()  # a fresh compile per shape, as in a training run with one patch size
        for onehot in (False, True):
            losses = _losses(onehot, plain)
            logits, target = _inputs(shape, device, onehot)
            steps = {n: _step(f, logits, target) for n, f in losses.items()}
            print(f"\nshape {shape}, {'one-hot' if onehot else 'labels'} target; " + _first_calls(losses, logits, target, configs))
            times = _time_all(steps, configs, device, repeats)
            kept = {n: _kept_mib(f, logits, target) for n, f in losses.items()}
            peak = {n: _peak_mib(step, device) for n, step in steps.items()}
            _print_table(times, configs, losses, kept, peak)


def _header(device: torch.device, args) -> None:
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default: spin, then sleep)")
    print(f"device={device}  torch={torch.__version__}  default threads={torch.get_num_threads()}  "
          f"cores={os.cpu_count()}  repeats={args.repeats}")  # fmt: skip
    print(f"OMP_WAIT_POLICY={policy}  GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}  "
          f"load average at start={os.getloadavg()[0]:.1f}")  # fmt: skip
    if device.type == "cpu":
        loaded = f"competitor: {args.competitor_threads} thread(s) of matmuls" if args.competitor_threads else "no competitor"
        print(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", nargs="+", default=None, help="e.g. 8,4,256,256 2,3,96,96,96")
    parser.add_argument("--competitor-threads", type=int, default=1, help="0 = no loaded columns")
    parser.add_argument("--competitor-seconds", type=float, default=1800.0, help="the competitor's lifetime cap")
    parser.add_argument("--plain", action="store_true", help="also time the plain autograd reference")
    args = parser.parse_args()
    device = torch.device(args.device)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes] if args.shapes else SHAPES
    _header(device, args)
    competitor = None
    if device.type == "cpu" and args.competitor_threads > 0:
        competitor = Competitor(args.competitor_threads, args.competitor_seconds)
    try:
        run(device, shapes, args.repeats, competitor, args.plain)
    finally:
        if competitor is not None:
            competitor.stop()


if __name__ == "__main__":
    main()
