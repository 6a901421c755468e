"""``train_speed.py --synthetic``: training steps on random tensors, our engine's precision options
(bfloat16 autocast, channels-last, ``torch.compile``) on and off against a bare float32 MONAI loop.

Every loop trains the same network from the same initial weights on the same random batches (no
data loader: this measures the step). The bare loop is the MONAI tutorial loop with no medseg_dfl
code: the plain MONAI network, ``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)``,
``torch.optim.AdamW``, float32. Ours is ``train_one_epoch`` (gradient clipping, non-finite check,
timing) with ``train.amp`` / the memory format / ``train.compile`` set per row. After a warm-up
(where ``torch.compile`` compiles; its time is printed), the loops take turns ``rounds`` times;
samples/s is the median over rounds, the ratio to bare the median of the per-round ratios.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet, UNet

from medseg_dfl.config import Config
from medseg_dfl.engine.components import Components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.optim import build_optimizer, build_scheduler, trainable_parameters
from medseg_dfl.engine.precision import autocast_dtype, compile_network, memory_format
from medseg_dfl.engine.training import train_one_epoch
from medseg_dfl.losses.registry import build_loss

NETWORKS = {  # name -> (MONAI class, kwargs besides in/out channels, default patch)
    # DynUNet as `medseg-dfl plan` builds it for the hippocampus (configs/hippocampus_3d.yaml)
    "dynunet": (DynUNet, {"spatial_dims": 3, "kernel_size": [[3, 3, 3]] * 4, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3,
                          "upsample_kernel_size": [[2, 2, 2]] * 3, "filters": [16, 32, 64, 128],
                          "norm_name": "instance", "deep_supervision": False, "res_block": False}, [40, 56, 40]),
    # MONAI UNet 16-128: its first stage is strided (strides[0] = 2)
    "unet": (UNet, {"spatial_dims": 3, "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 2},
             [40, 56, 40]),
    # the smear network of configs/blood_smear_2d.yaml (the demo), its 128x128 patches
    "unet2d": (UNet, {"spatial_dims": 2, "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1},
               [128, 128]),
}  # fmt: skip
CLASSES = 3


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    amp: bool
    channels_last: bool
    compile: bool = False


def variants(with_compile: bool) -> list[Variant]:
    """Ours with each option on and off; the shipped default (``train.amp: true``) is amp + the
    layout :func:`memory_format` picks."""
    amp = autocast_dtype(torch.device("cpu"), True) is not None
    rows = [Variant("ours fp32", False, False), Variant("ours fp32 + channels-last", False, True),
            Variant("ours amp (bf16)", True, False), Variant("ours amp + channels-last (shipped)", True, True)]  # fmt: skip
    if with_compile:
        rows += [Variant("ours amp + channels-last + compile", True, True, True),
                 Variant("ours fp32 + compile", False, False, True)]  # fmt: skip
    return [v for v in rows if amp or not v.amp]


def _batches(batch: int, patch: list[int], count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    shape = (batch, 1, *patch)
    return [{"image": torch.randn(shape, generator=gen).to(device),
             "label": torch.randint(0, CLASSES, shape, generator=gen).to(device)} for _ in range(count)]  # fmt: skip


def _bare(model: torch.nn.Module, batches: list[dict]) -> Callable[[int], None]:
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-5)

    def run(steps: int) -> None:
        model.train()
        for step in range(steps):
            batch = batches[step % len(batches)]
            optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            loss.item()

    return run


def _ours(cfg: Config, model: torch.nn.Module, variant: Variant, batches: list[dict],
          device: torch.device) -> Callable[[int], None]:  # fmt: skip
    fmt = memory_format(device, len(batches[0]["image"].shape) - 2, True) if variant.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    loss_fn = build_loss("dice-ce", CLASSES)
    optimizer = build_optimizer(cfg, trainable_parameters(model, loss_fn))
    parts = Components(model=model, forward=compile_network(model, variant.compile), loss_fn=loss_fn,
                       optimizer=optimizer, scheduler=build_scheduler(cfg, optimizer),
                       scaler=torch.amp.GradScaler("cuda", enabled=variant.amp and device.type == "cuda"),
                       train_loader=batches, val_loader=None, device=device, ctx=DistContext(),
                       amp=variant.amp, fingerprint=None, memory_format=fmt)  # fmt: skip

    def run(steps: int) -> None:
        cfg.train.steps_per_epoch = steps
        train_one_epoch(parts, cfg)

    return run


def run_synthetic(network: str, batch: int, patch: list[int] | None, warmup: int, steps: int, rounds: int,
                  with_compile: bool, device: torch.device) -> None:  # fmt: skip
    cls, kwargs, default_patch = NETWORKS[network]
    patch = patch or default_patch
    torch.manual_seed(0)
    initial = cls(in_channels=1, out_channels=CLASSES, **kwargs).to(device)
    cfg = Config()
    cfg.data.prefetch = False  # batches are ready in memory: no thread
    batches = _batches(batch, patch, 3, device)

    def fresh() -> torch.nn.Module:
        model = cls(in_channels=1, out_channels=CLASSES, **kwargs).to(device)
        model.load_state_dict(initial.state_dict())
        return model

    loops = {"bare MONAI fp32": _bare(fresh(), batches)}
    loops.update({v.name: _ours(cfg, fresh(), v, batches, device) for v in variants(with_compile)})
    print(f"\n{network}: batch {batch} x {patch}, {CLASSES} classes, {torch.get_num_threads()} threads, "
          f"{warmup} warm-up + {rounds} rounds x {steps} steps; load average {os.getloadavg()[0]:.2f}", flush=True)
    for name, loop in loops.items():
        start = time.perf_counter()
        loop(warmup)
        print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s for {warmup} steps", flush=True)
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for round_index in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(steps)
            seconds[name].append(time.perf_counter() - start)
        print(f"  round {round_index + 1}: " + ", ".join(f"{n} {s[-1] / steps:.2f} s/step" for n, s in seconds.items())
              + f"; load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    _table(seconds, batch * steps)


def _table(seconds: dict[str, list[float]], samples: int) -> None:
    bare = seconds["bare MONAI fp32"]
    print(f"  {'loop':38s} {'samples/s':>10s} {'best':>7s} {'x bare (median of rounds)':>26s}")
    for name, times in seconds.items():
        ratio = statistics.median(b / t for b, t in zip(bare, times, strict=True))
        print(f"  {name:38s} {samples / statistics.median(times):10.2f} {samples / min(times):7.2f} {ratio:26.2f}")
