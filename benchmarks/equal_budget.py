"""Training ingredients and networks compared at an equal wall-clock budget (issue 21).

    medseg-dfl plan data/hippocampus --time-budget 5 -o hippo5.yaml
    python benchmarks/equal_budget.py hippo5.yaml --out bench_runs/hippo_eq
    python benchmarks/equal_budget.py hippo5.yaml --only base sgd-poly

Each variant is the planned config (``BASE``, planned with ``--time-budget``) with the variant's
``--set`` overrides, trained for the base plan's epochs times the ratio of the two training steps'
costs (base / variant), timed back to back in this process: a costlier ingredient gets fewer
epochs (equal compute, not equal epochs). A ratio of two steps timed together is robust to the
load of the machine, where two plans timed minutes apart are not. The score is the run's validation mean foreground Dice
(sliding window over the whole validation cases, as ``train`` computes it): the best epoch and the
last one. Results go to ``OUT/results.json`` after every variant, so an interrupted comparison
resumes where it stopped (finished variants are skipped); ``OUT/results.md`` is the table, with
the load average before and after each run beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from medseg_dfl.config import Config, load_config
from medseg_dfl.planning.timing import time_training_step

# name -> (what it is, plan --set overrides). "base" is the plan as shipped.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("the plan as shipped: DynUNet 16-128, AdamW 3e-3 cosine, dice-ce, classes centred equally", []),
    "seed-1": ("the base plan with another seed (initialisation, split order, augmentation): the noise",
               ["experiment.seed=1"]),
    "sgd-poly": (
        "nnU-Net's optimiser: SGD Nesterov 0.99, lr 0.01, poly 0.9, weight decay 3e-5, clip 12",
        ["optim.name=sgd", "optim.momentum=0.99", "optim.lr=0.01", "optim.scheduler=poly",
         "optim.weight_decay=3e-5", "optim.grad_clip=12", "optim.warmup_epochs=0"],
    ),
    "fg33": (
        "nnU-Net's sampling: a third of the patches centred on foreground, the rest anywhere",
        ["transforms.class_ratios=[0.67,0.165,0.165]"],
    ),
    "batch-dice": ("Dice pooled over the batch (nnU-Net's batch Dice)", ["loss.kwargs={batch: true}"]),
    "resenc": ("residual encoder blocks (DynUNet res_block, as nnU-Net's ResEnc presets)",
               ["network.kwargs.res_block=true"]),
    "unet-strided": (
        "MONAI UNet 16-128, strided first stage, 2 residual units",
        ["network.name=UNet", "network.kwargs={channels: [16, 32, 64, 128], strides: [2, 2, 2], num_res_units: 2}"],
    ),
    "deep-sup": ("deep supervision (nnU-Net: 1/2^i weights over the decoder outputs)",
                 ["network.kwargs.deep_supervision=true"]),
    "low-res": ("nnU-Net's low-resolution simulation and gamma augmentation",
                ["transforms.augment.low_resolution=true"]),
    "affine-nnunet": ("nnU-Net's rotation (30 degrees) and scaling (0.7-1.3), p 0.36 instead of 15 degrees, 0.9-1.1, p 0.2",
                      ["transforms.augment.affine_prob=0.36", "transforms.augment.rotate_degrees=30",
                       "transforms.augment.scale_fraction=0.3"]),
    "ema": ("a moving average of the weights, decay 0.99 (about the last 100 steps), validated and saved",
            ["train.ema_decay=0.99"]),
}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _scores(run: Path) -> dict:
    with open(run / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("mean_fg_dice")]
    dice = [float(r["mean_fg_dice"]) for r in rows]
    return {"best_dice": max(dice), "last_dice": dice[-1], "epochs": int(rows[-1]["epoch"]),
            "train_seconds": sum(float(r["seconds"]) for r in rows)}


def step_cost_ratio(base: Config, variant: Config, rounds: int = 3) -> tuple[float, float, float]:
    """(variant / base cost of one training step, base s, variant s): medians of alternate timings."""
    if base.network == variant.network and base.loss == variant.loss \
            and base.train.batch_size == variant.train.batch_size:
        return 1.0, 0.0, 0.0  # the same network, loss and batch: the same step
    device = torch.device("cpu")
    times: dict[str, list[float]] = {"base": [], "variant": []}
    for _ in range(rounds):
        for key, cfg in (("base", base), ("variant", variant)):
            times[key].append(time_training_step(cfg, device, steps=2))
    b, v = statistics.median(times["base"]), statistics.median(times["variant"])
    return v / b, b, v


def run_variant(cli: list[str], base_path: Path, out: Path, name: str) -> dict:
    what, overrides = VARIANTS[name]
    run = out / "runs" / name
    base = load_config(base_path)
    variant = load_config(base_path, overrides)
    ratio, base_s, variant_s = step_cost_ratio(base, variant)
    epochs = max(1, round(base.train.epochs / ratio))
    sets = [a for o in [*overrides, f"experiment.name={name}", f"train.epochs={epochs}"] for a in ("--set", o)]
    load_before, start = _load(), time.time()
    subprocess.run([*cli, "train", str(base_path), "-o", str(run), "--no-progress", *sets], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - start
    step = f"x{ratio:.2f}" + (f" ({variant_s:.2f} s vs {base_s:.2f} s)" if base_s else "")
    return {"variant": name, "what": what, "overrides": overrides, "step": step,
            **_scores(run), "wall_minutes": wall / 60, "load_before": load_before, "load_after": _load()}


def write_table(results: list[dict], out: Path, base_path: Path) -> None:
    base = next((r["best_dice"] for r in results if r["variant"] == "base"), None)
    lines = [f"Equal compute: `{base_path.name}`'s epochs x the step-cost ratio per variant, then `train`; "
             "validation mean foreground Dice (best epoch / last epoch).", "",
             "| variant | what | step cost vs base | epochs | best Dice | last Dice | vs base | wall min | load before / after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        delta = f"{r['best_dice'] - base:+.4f}" if base is not None else ""
        lines.append(f"| {r['variant']} | {r['what']} | {r['step']} | {r['epochs']} | {r['best_dice']:.4f} | "
                     f"{r['last_dice']:.4f} | {delta} | {r['wall_minutes']:.1f} | {r['load_before']} / {r['load_after']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="a config planned with plan --time-budget")
    parser.add_argument("--out", type=Path, default=Path("bench_runs/equal_budget"))
    parser.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants to run (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else []
    done = {r["variant"] for r in results}
    cli = [sys.executable, "-m", "medseg_dfl.cli"]
    for name in args.only or list(VARIANTS):
        if name in done:
            continue
        print(f"{name}: {VARIANTS[name][0]} (load {_load()})", flush=True)
        try:
            results.append(run_variant(cli, args.base, args.out, name))
        except subprocess.CalledProcessError as err:
            print(f"{name}: failed ({err}); skipped", flush=True)
            continue
        store.write_text(json.dumps(results, indent=2))
        write_table(results, args.out, args.base)
        r = results[-1]
        print(f"{name}: best {r['best_dice']:.4f} last {r['last_dice']:.4f} epochs {r['epochs']} "
              f"({r['wall_minutes']:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
