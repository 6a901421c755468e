"""Mixed precision on CPU (issue 21): bfloat16 autocast where the CPU runs it natively, float32 with
one log line elsewhere, float32 logits into the loss, channels-last, and bf16 training that reaches
the same loss and Dice as float32 on a small synthetic problem."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet
from monai.networks.utils import one_hot

import medseg_dfl.engine.precision as precision
from medseg_dfl.config import Config, config_from_dict
from medseg_dfl.engine.components import Components, build_components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.metrics import dice_iou
from medseg_dfl.engine.optim import build_optimizer, build_scheduler
from medseg_dfl.engine.precision import autocast_dtype, compile_network, cpu_bf16_supported, half_dtype
from medseg_dfl.engine.training import train_one_epoch
from medseg_dfl.losses.registry import build_loss

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    from medseg_dfl.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("smears")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0)
    return root


def _config(root: Path, amp: bool) -> Config:
    return config_from_dict({
        "experiment": {"name": "tiny", "seed": 0},
        "data": {"root": str(root), "cache": "memory", "prefetch": False},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False}},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}},
        "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 1, "amp": amp},
    })  # fmt: skip


def _dtypes_seen(parts: Components, cfg: Config) -> dict[str, torch.dtype]:
    """One training step; the dtype of the first convolution's output and of the loss's input."""
    seen: dict[str, torch.dtype] = {}
    conv = next(m for m in parts.model.modules() if isinstance(m, torch.nn.Conv2d))

    def record(key: str, tensor: torch.Tensor) -> None:  # a hook returning a value would replace the output
        seen.setdefault(key, tensor.dtype)

    conv.register_forward_hook(lambda m, args, out: record("conv", out))
    parts.loss_fn.register_forward_pre_hook(lambda m, args: record("loss", args[0]))
    train_one_epoch(parts, cfg)
    return seen


def _build(root: Path, amp: bool) -> tuple[Components, Config]:
    cfg = _config(root, amp)
    return build_components(cfg, CPU, DistContext()), cfg


def test_amp_on_a_bf16_cpu_runs_the_network_in_bfloat16_and_the_loss_in_float32(smears, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        parts, cfg = _build(smears, amp=True)
    assert parts.amp and not parts.scaler.is_enabled()  # bfloat16 needs no loss scaling
    assert parts.memory_format == torch.channels_last
    conv = next(m for m in parts.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert _dtypes_seen(parts, cfg) == {"conv": torch.bfloat16, "loss": torch.float32}
    assert not [r for r in caplog.records if r.name == precision.__name__]


def test_amp_without_bf16_support_trains_in_float32_with_one_log_line(smears, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        parts, cfg = _build(smears, amp=True)
    lines = [r.getMessage() for r in caplog.records if r.name == precision.__name__]
    assert len(lines) == 1 and "float32" in lines[0] and "bfloat16" in lines[0]
    assert not parts.amp and parts.memory_format == torch.contiguous_format
    assert _dtypes_seen(parts, cfg) == {"conv": torch.float32, "loss": torch.float32}


def test_amp_off_stays_float32_without_a_log_line(smears, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        parts, cfg = _build(smears, amp=False)
    assert not [r for r in caplog.records if r.name == precision.__name__]
    assert _dtypes_seen(parts, cfg) == {"conv": torch.float32, "loss": torch.float32}


@pytest.mark.parametrize("supported, cpu, cuda", [(True, torch.bfloat16, torch.float16),
                                                  (False, torch.float32, torch.float16)])  # fmt: skip
def test_half_dtype_of_inference(monkeypatch, supported, cpu, cuda):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: supported)
    assert half_dtype(CPU) == cpu
    assert half_dtype(torch.device("cuda")) == cuda
    assert autocast_dtype(CPU, False) is None


@pytest.mark.parametrize("flags, expected", [("fpu avx2 amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True),
                                             ("fpu avx2 avx512f", False)])  # fmt: skip
def test_cpuinfo_flags_decide_where_torch_has_no_probe(tmp_path, monkeypatch, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
    monkeypatch.setattr(precision, "_CPUINFO", cpuinfo)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_bf16_supported() is expected


def test_compile_is_off_by_default_and_wraps_when_asked():
    net = torch.nn.Conv2d(1, 1, 3)
    assert Config().train.compile is False
    assert compile_network(net, False) is net
    compiled = compile_network(net, True)  # compiles lazily at its first call: not called here
    assert compiled is not net and getattr(compiled, "_orig_mod", None) is net


def _blobs(seed: int, count: int = 4) -> list[dict[str, torch.Tensor]]:
    """Batches of noisy two-class discs: class 1 inside a bright disc, class 2 in a dim square."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    batches = []
    for _ in range(count):
        labels = torch.zeros(4, 1, 32, 32, dtype=torch.long)
        for i in range(4):
            cy, cx = torch.randint(8, 24, (2,), generator=gen).tolist()
            labels[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 < 30] = 1
            sy, sx = torch.randint(0, 24, (2,), generator=gen).tolist()
            square = labels[i, 0, sy:sy + 8, sx:sx + 8]
            square[square == 0] = 2
        image = labels.float() * torch.tensor([0.0, 1.0, -1.0])[labels] + 0.3 * torch.randn(4, 1, 32, 32, generator=gen)
        batches.append({"image": image, "label": labels})
    return batches


def _train_blobs(amp: bool) -> tuple[float, float]:
    """(mean training loss of the last epoch, mean foreground Dice on held-out blobs) of a small UNet."""
    cfg = Config()
    cfg.optim.lr, cfg.optim.warmup_epochs, cfg.data.prefetch, cfg.train.steps_per_epoch = 0.01, 0, False, 4
    torch.manual_seed(0)
    model = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    fmt = torch.channels_last if amp else torch.contiguous_format
    model = model.to(memory_format=fmt)
    loss_fn = build_loss("dice-ce", 3)
    optimizer = build_optimizer(cfg, model.parameters())
    parts = Components(model, model, loss_fn, optimizer, build_scheduler(cfg, optimizer),
                       torch.amp.GradScaler("cuda", enabled=False), _blobs(0), None, CPU, DistContext(), amp, None,
                       memory_format=fmt)  # fmt: skip
    for _ in range(15):
        loss = train_one_epoch(parts, cfg).loss
    model.eval()
    test = _blobs(1, count=1)[0]
    with torch.no_grad():
        pred = model(test["image"]).argmax(1, keepdim=True)
    dice, _ = dice_iou(one_hot(pred, 3), one_hot(test["label"], 3))
    return loss, float(torch.nanmean(dice[:, 1:]))


def test_bfloat16_training_matches_float32_on_a_small_problem():
    loss32, dice32 = _train_blobs(amp=False)
    loss16, dice16 = _train_blobs(amp=True)
    assert dice32 > 0.8  # the problem is learnt at all
    assert abs(dice16 - dice32) < 0.05
    assert loss16 == pytest.approx(loss32, rel=0.15, abs=0.03)
