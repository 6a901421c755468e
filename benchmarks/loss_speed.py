"""Forward + backward speed and peak memory of the Dual Focal Loss against MONAI's FocalLoss and
F.cross_entropy, all measured in the same run.

    python benchmarks/loss_speed.py                 # CPU, current thread count
    python benchmarks/loss_speed.py --threads 1 --repeats 9
    python benchmarks/loss_speed.py --device cuda

Every loss gets logits B,C,spatial (requires_grad) and integer labels B,1,spatial, as in training:
the one-hot conversion is part of what DFL and FocalLoss are timed for.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before the call.
On CPU, the peak of the running sum of the allocations and frees that ``torch.profiler`` records
during one forward + backward (``profile_memory=True``): memory held by tensors the call creates,
not process RSS.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.losses import FocalLoss

from medseg_dfl.losses import DualFocalLoss, dual_focal_loss

SHAPES = ((8, 4, 256, 256), (2, 3, 96, 96, 96))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _candidates() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    dfl = DualFocalLoss(to_onehot_y=True)
    focal = FocalLoss(to_onehot_y=True, use_softmax=True)

    def dfl_plain(logits, labels):  # the autograd reference path the tests compare against
        y = torch.zeros_like(logits).scatter_(1, labels, 1.0)
        return dual_focal_loss(logits, y, fused=False)

    return {
        "cross_entropy": lambda logits, labels: F.cross_entropy(logits, labels[:, 0]),
        "monai_focal": focal,
        "dfl": dfl,
        "dfl_plain": dfl_plain,
    }


def _time_ms(fn: Callable[[], None], device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _peak_mib(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.events() if e.name == "[memory]"), key=lambda e: e.time_range.start
    )  # alloc > 0, free < 0
    current = peak = 0
    for event in events:
        current += event.cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


def run(device: torch.device, repeats: int) -> None:
    losses = _candidates()
    print(f"device={device}  threads={torch.get_num_threads()}  torch={torch.__version__}  repeats={repeats}")
    for shape in SHAPES:
        gen = torch.Generator().manual_seed(0)
        logits = torch.randn(shape, generator=gen).to(device).requires_grad_()
        labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=gen).to(device)
        results = {}
        for name, loss_fn in losses.items():

            def step(loss_fn=loss_fn, logits=logits, labels=labels):
                logits.grad = None
                loss_fn(logits, labels).backward()

            results[name] = (_time_ms(step, device, repeats), _peak_mib(step, device))
        ce_ms, focal_ms = results["cross_entropy"][0], results["monai_focal"][0]
        print(f"\nshape {shape}")
        print(f"  {'loss':<14}{'median ms':>11}{'peak MiB':>10}{'x CE':>7}{'x Focal':>9}")
        for name, (ms, mib) in results.items():
            print(f"  {name:<14}{ms:>11.1f}{mib:>10.1f}{ms / ce_ms:>7.2f}{ms / focal_ms:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(torch.device(args.device), args.repeats)


if __name__ == "__main__":
    main()
