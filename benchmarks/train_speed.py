"""Training-step speed of our engine against a bare MONAI training loop, measured in the same run.

    python benchmarks/train_speed.py                                   # blood_smear_2d, CPU
    python benchmarks/train_speed.py --config configs/volume_3d.yaml --steps 6
    python benchmarks/train_speed.py --set data.cache=none             # data-wait without caching
    python benchmarks/train_speed.py --device cuda
    python benchmarks/train_speed.py --synthetic [--networks dynunet unet] [--compile]   # issue 21

``--synthetic`` (``benchmarks/_synthetic_steps.py``): training steps on random tensors, the
precision options (bfloat16 autocast, channels-last, torch.compile) on and off against a bare
float32 MONAI loop with the same network, batch and patch (the hippocampus plan: DynUNet 16-128 and
a MONAI UNet 16-128, patch 40x56x40; ``unet2d``: the smear UNet at 128x128); it prints samples/s
and the ratio to the bare loop.

The loops train the same network (same initial weights) with the same loss on batches from the
same data loader (``build_components``: cached MONAI dataset, class-balanced patches, augmentation).
The bare loop is the MONAI tutorial loop: forward, loss, backward, ``optimizer.step()``. Ours is
``train_one_epoch`` (AMP scaler, gradient clipping, loss-parameter averaging, timing, non-finite
check), run twice: as shipped (with ``data.num_workers: 0`` the next batch is drawn in a
background thread while the step runs, ``medseg_dfl/data/prefetch.py``) and without that thread
(the loop before issue 13's prefetch). All loops take turns ``--rounds`` times after a warm-up
round, each reseeded alike; per loop it prints the median (and best) ms/step, the share of it spent
waiting for data (target: under 10% for ours) and the compute time per step (ms/step minus the
wait: the prefetch thread must not slow the step itself), with ratios to the bare loop (target:
ours within 1.1x).

``--tracked-augmentation`` runs the per-draw transforms with MONAI's metadata tracking (as before
issue 13), to compare the data wait in the same conditions; the default is the pipeline as shipped
(``medseg_dfl/untracked.py``). ``--competitor-threads N`` also runs ``benchmarks/loss_speed.py``'s
competing process (N threads of matmuls) for the whole run. The header prints the OpenMP wait
policy and the load average, each round the load average after it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from medseg_dfl.config import load_config
from medseg_dfl.engine import training
from medseg_dfl.engine.components import Components, build_components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.training import seed_epoch, train_one_epoch
from medseg_dfl.losses.deep_supervision import supervised_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_speed import Competitor  # noqa: E402 - the same competing process as the loss benchmark

ROOT = Path(__file__).resolve().parents[1]
PREFETCHED = training.prefetched


def _bare_loop(parts: Components, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               steps: int) -> tuple[float, float]:  # fmt: skip
    """The MONAI tutorial loop; returns (seconds, seconds waiting for the loader)."""
    model.train()
    done, waited, start = 0, 0.0, time.perf_counter()
    while done < steps:
        fetch = time.perf_counter()
        for batch in parts.train_loader:
            waited += time.perf_counter() - fetch
            inputs, labels = batch["image"].to(parts.device), batch["label"].to(parts.device)
            optimizer.zero_grad()
            loss = supervised_loss(parts.loss_fn, model(inputs), labels)  # a deep-supervision config too
            loss.backward()
            optimizer.step()
            loss.item()
            done += 1
            if done == steps:
                break
            fetch = time.perf_counter()
    return time.perf_counter() - start, waited


def _ours(parts: Components, cfg, steps: int, prefetch: bool) -> tuple[float, float]:
    """train_one_epoch for ``steps`` steps, with or without the prefetch thread (``prefetch=False``
    is the loop as it was before issue 13); returns (seconds, seconds waiting for data)."""
    training.prefetched = PREFETCHED if prefetch else (lambda batches, **kwargs: batches)
    try:
        stats = train_one_epoch(parts, cfg)
    finally:
        training.prefetched = PREFETCHED
    assert stats.steps == steps
    return stats.seconds, stats.data_seconds


def _header(cfg, parts: Components, args, built: float) -> None:
    one, five, fifteen = os.getloadavg()
    print(f"built in {built:.1f}s: {cfg.network.name} on {cfg.data.root} (cache {cfg.data.cache}, "
          f"{cfg.data.num_workers} workers, batch {cfg.train.batch_size} x {cfg.transforms.num_samples} patches "
          f"of {cfg.transforms.patch_size}, loss {cfg.loss.name}, {torch.get_num_threads()} threads, {parts.device}, "
          f"augmentation {'with' if args.tracked_augmentation else 'without'} metadata tracking)")
    competitor = f"{args.competitor_threads} thread(s) of matmuls" if args.competitor_threads else "none"
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default: spin, then sleep)')}, "
          f"competitor: {competitor}, load average at start {one:.2f} {five:.2f} {fifteen:.2f}")


def _summary(results: dict[str, list[tuple[float, float]]], steps: int) -> None:
    """Median (and best) ms/step, data-wait share and compute ms/step of each loop; ratios to bare."""
    def stats(name: str, pick) -> tuple[float, float, float]:
        rounds = results[name]
        total = pick(seconds for seconds, _ in rounds) / steps
        wait = statistics.median(waited / seconds for seconds, waited in rounds)
        compute = pick((seconds - waited) for seconds, waited in rounds) / steps
        return 1000 * total, 100 * wait, 1000 * compute

    for label, pick in (("median", statistics.median), ("best", min)):
        bare = stats("bare MONAI", pick)
        for name in results:
            total, wait, compute = stats(name, pick)
            print(f"{label:6s} {name:28s} {total:7.1f} ms/step  data wait {wait:5.1f}%  compute {compute:7.1f} ms/step"
                  f"  step-time ratio to bare {total / bare[0]:.3f}x  compute ratio {compute / bare[2]:.3f}x")
    # Load swings between rounds; loops of one round ran seconds apart, so per-round ratios are steadier.
    names = list(results)
    for name in names[1:]:
        for base in names[: names.index(name)]:
            paired = [a[0] / b[0] for a, b in zip(results[name], results[base], strict=True)]
            print(f"per-round step-time ratio {name} / {base}: median {statistics.median(paired):.3f}x "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in paired)})")
    print("targets: ours data wait < 10%, ours/bare step-time ratio <= 1.1x, compute ratio ~1 (the prefetch "
          "thread must not slow the step itself)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "blood_smear_2d.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--steps", type=int, default=8, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tracked-augmentation", action="store_true",
                        help="the 'before' of issue 13: per-draw transforms with MONAI metadata tracking")  # fmt: skip
    parser.add_argument("--competitor-threads", type=int, default=0,
                        help="also run a process keeping this many threads busy (benchmarks/loss_speed.py's)")  # fmt: skip
    parser.add_argument("--synthetic", action="store_true", help="random-tensor steps: precision options vs bare fp32")
    parser.add_argument("--networks", nargs="+", default=["dynunet", "unet"], help="--synthetic: dynunet, unet, unet2d")
    parser.add_argument("--batch", type=int, default=4, help="--synthetic: batch size")
    parser.add_argument("--patch", default=None, help="--synthetic: patch size (default 40x56x40, 128x128 for unet2d)")
    parser.add_argument("--warmup", type=int, default=2, help="--synthetic: warm-up steps per loop")
    parser.add_argument("--compile", action="store_true", help="--synthetic: also the torch.compile rows")
    args = parser.parse_args()
    if args.synthetic:
        _synthetic(args)
        return
    if args.tracked_augmentation:
        import medseg_dfl.transforms

        medseg_dfl.transforms.without_metadata = lambda steps, **kwargs: list(steps)

    cfg = load_config(args.config, [*args.overrides, f"train.steps_per_epoch={args.steps}"])
    device = torch.device(args.device)
    torch.manual_seed(cfg.experiment.seed)
    start = time.perf_counter()
    parts = build_components(cfg, device, DistContext())
    _header(cfg, parts, args, time.perf_counter() - start)
    from medseg_dfl.networks import build_network

    bare_model = build_network(cfg).to(device)
    bare_model.load_state_dict(parts.model.state_dict())
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    competitor = Competitor(args.competitor_threads, 3600.0) if args.competitor_threads else None
    if competitor is not None:
        competitor.resume()
    prefetch = cfg.data.num_workers == 0  # train_one_epoch prefetches only then
    loops = {
        "bare MONAI": lambda: _bare_loop(parts, bare_model, bare_opt, args.steps),
        "ours, no prefetch (before)": lambda: _ours(parts, cfg, args.steps, prefetch=False),
    }
    if prefetch:
        loops["ours, prefetch thread"] = lambda: _ours(parts, cfg, args.steps, prefetch=True)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in loops}
    try:
        for round_index in range(args.rounds + 1):  # round 0 warms up every loop
            line = []
            for name, loop in loops.items():
                seed_epoch(cfg, round_index, parts.train_loader)
                seconds, waited = loop()
                if round_index:
                    results[name].append((seconds, waited))
                line.append(f"{name} {1000 * seconds / args.steps:.0f} ms/step ({100 * waited / seconds:.1f}% wait)")
            warm = " (warm-up)" if not round_index else ""
            print(f"round {round_index}{warm}: " + "; ".join(line) + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if competitor is not None:
            competitor.stop()
    # On a shared machine other jobs slow single rounds down: the best round of each is the least
    # disturbed, the median the typical one. Ratio > 1: slower than the bare loop.
    _summary(results, args.steps)
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _synthetic(args: argparse.Namespace) -> None:
    from _synthetic_steps import run_synthetic

    print(f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch {torch.__version__}")
    patch = [int(x) for x in args.patch.split("x")] if args.patch else None
    for network in args.networks:
        run_synthetic(network, args.batch, patch, args.warmup, args.steps, args.rounds, args.compile,
                      torch.device(args.device))  # fmt: skip
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
