"""Training-step speed of our engine against a bare MONAI training loop, measured in the same run.

    python benchmarks/train_speed.py                                   # blood_smear_2d, CPU
    python benchmarks/train_speed.py --config configs/volume_3d.yaml --steps 6
    python benchmarks/train_speed.py --set data.cache=none             # data-wait without caching
    python benchmarks/train_speed.py --device cuda

Both loops train the same network (same initial weights) with the same loss on batches from the
same data loader (``build_components``: cached MONAI dataset, class-balanced patches, augmentation).
The bare loop is the MONAI tutorial loop: forward, loss, backward, ``optimizer.step()``. Ours is
``train_one_epoch`` (AMP scaler, gradient clipping, loss-parameter averaging, timing, non-finite
check). They alternate ``--rounds`` times after a warm-up round; the median steps/s is reported, with
the ratio (target: ours within 1.1x of bare) and the share of our step time spent waiting for data
(target: under 10% with caching).

``--tracked-augmentation`` runs the per-draw transforms with MONAI's metadata tracking (as before
issue 13), to compare the data wait in the same conditions; the default is the pipeline as shipped
(``medseg_dfl/untracked.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from medseg_dfl.config import load_config
from medseg_dfl.engine.components import Components, build_components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.training import seed_epoch, train_one_epoch

ROOT = Path(__file__).resolve().parents[1]


def _bare_loop(parts: Components, model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> float:
    """The MONAI tutorial loop; returns steps/s."""
    model.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for batch in parts.train_loader:
            inputs, labels = batch["image"].to(parts.device), batch["label"].to(parts.device)
            optimizer.zero_grad()
            loss = parts.loss_fn(model(inputs), labels)
            loss.backward()
            optimizer.step()
            loss.item()
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - start)


def _ours(parts: Components, cfg, steps: int) -> tuple[float, float]:
    """train_one_epoch for ``steps`` steps; returns (steps/s, data-wait share)."""
    stats = train_one_epoch(parts, cfg)
    assert stats.steps == steps
    return stats.steps / stats.seconds, stats.data_seconds / stats.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "blood_smear_2d.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--steps", type=int, default=8, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tracked-augmentation", action="store_true",
                        help="the 'before' of issue 13: per-draw transforms with MONAI metadata tracking")  # fmt: skip
    args = parser.parse_args()
    if args.tracked_augmentation:
        import medseg_dfl.transforms

        medseg_dfl.transforms.without_metadata = lambda steps, **kwargs: list(steps)

    cfg = load_config(args.config, [*args.overrides, f"train.steps_per_epoch={args.steps}"])
    device = torch.device(args.device)
    torch.manual_seed(cfg.experiment.seed)
    start = time.perf_counter()
    parts = build_components(cfg, device, DistContext())
    print(f"built in {time.perf_counter() - start:.1f}s: {cfg.network.name} on {cfg.data.root} "
          f"(cache {cfg.data.cache}, batch {cfg.train.batch_size} x {cfg.transforms.num_samples} patches "
          f"of {cfg.transforms.patch_size}, loss {cfg.loss.name}, {torch.get_num_threads()} threads, {device}, "
          f"augmentation {'with' if args.tracked_augmentation else 'without'} metadata tracking, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load average {os.getloadavg()[0]:.1f})")
    from medseg_dfl.networks import build_network

    bare_model = build_network(cfg).to(device)
    bare_model.load_state_dict(parts.model.state_dict())
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    ours, bare, waits = [], [], []
    for round_index in range(args.rounds + 1):  # round 0 warms up both
        seed_epoch(cfg, round_index, parts.train_loader)
        speed, wait = _ours(parts, cfg, args.steps)
        seed_epoch(cfg, round_index, parts.train_loader)
        bare_speed = _bare_loop(parts, bare_model, bare_opt, args.steps)
        if round_index:
            ours.append(speed)
            bare.append(bare_speed)
            waits.append(wait)
        print(f"round {round_index}{' (warm-up)' if not round_index else ''}: ours {speed:.3f} steps/s "
              f"(data wait {100 * wait:.1f}%), bare MONAI {bare_speed:.3f} steps/s")
    # On a shared machine other jobs slow single rounds down: the best round of each is the least
    # disturbed, the median the typical one. Ratio > 1: ours is slower.
    for label, pick in (("median", statistics.median), ("best", max)):
        ours_s, bare_s = pick(ours), pick(bare)
        print(f"{label}: ours {ours_s:.3f} steps/s, bare MONAI loop {bare_s:.3f} steps/s, "
              f"ours/bare step-time ratio {bare_s / ours_s:.3f}x (target <= 1.1x)")
    print(f"data wait share of our step time: median {100 * statistics.median(waits):.1f}%, "
          f"min {100 * min(waits):.1f}% (target < 10% with caching)")

if __name__ == "__main__":
    main()
