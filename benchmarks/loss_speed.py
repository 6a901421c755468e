"""Forward + backward speed and peak memory of the Dual Focal Loss against MONAI's FocalLoss and
F.cross_entropy, all measured in the same run.

    python benchmarks/loss_speed.py                 # CPU, current thread count
    python benchmarks/loss_speed.py --threads 1 --repeats 9
    python benchmarks/loss_speed.py --device cuda

Every loss gets logits B,C,spatial (requires_grad) and integer labels B,1,spatial, as in training:
the one-hot conversion is part of what DFL and FocalLoss are timed for.

Memory: "saved MiB" = the tensors autograd keeps from forward to backward (unique storages, counted
with ``torch.autograd.graph.saved_tensors_hooks``, inputs excluded): exact on any device, but not
the transient peak. "peak MiB" = the rise of ``torch.cuda.max_memory_allocated`` during one forward
+ backward, on CUDA only. CPU peak memory is not reported: process RSS on a shared machine (and
glibc's caching of freed blocks) made it unreliable in our tries.
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


def _times_ms(steps: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median time per step; the steps take turns, so a busy machine slows them all alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats + 2):  # two warm-up rounds
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            if round_ >= 2:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _saved_mib(loss_fn, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Tensors autograd keeps from forward to backward (unique storages; the inputs excluded)."""
    inputs = {logits.untyped_storage().data_ptr(), labels.untyped_storage().data_ptr()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(logits, labels)
    torch.autograd.grad(loss, logits)
    return sum(saved.values()) / 2**20


def _peak_mib(step: Callable[[], None], device: torch.device) -> float:
    """CUDA: the rise of max_memory_allocated during one step; CPU: not measured (nan)."""
    if device.type != "cuda":
        return float("nan")
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _make_step(loss_fn, logits: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    def step() -> None:  # the gradient is returned, not kept in .grad: each step starts from the same memory
        torch.autograd.grad(loss_fn(logits, labels), logits)

    return step


def _inputs(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=gen).to(device).requires_grad_()
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=gen).to(device)
    return logits, labels


def run(device: torch.device, repeats: int) -> None:
    print(f"device={device}  threads={torch.get_num_threads()}  torch={torch.__version__}  repeats={repeats}")
    print(
        "saved MiB: tensors kept for backward; peak MiB: CUDA max_memory_allocated rise (CPU: not measured)"
    )
    losses = _candidates()
    for shape in SHAPES:
        logits, labels = _inputs(shape, device)
        steps = {n: _make_step(f, logits, labels) for n, f in losses.items()}
        times = _times_ms(steps, device, repeats)
        saved = {n: _saved_mib(f, logits, labels) for n, f in losses.items()}
        peak = {n: _peak_mib(step, device) for n, step in steps.items()}
        ce_ms, focal_ms = times["cross_entropy"], times["monai_focal"]
        print(f"\nshape {shape}")
        print(f"  {'loss':<14}{'median ms':>11}{'x CE':>7}{'x Focal':>9}{'saved MiB':>11}{'peak MiB':>10}")
        for name, ms in times.items():
            print(
                f"  {name:<14}{ms:>11.1f}{ms / ce_ms:>7.2f}{ms / focal_ms:>9.2f}{saved[name]:>11.1f}{peak[name]:>10.1f}"
            )


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
