"""Mixed precision, memory layout and compilation of the network: the one place that decides them.

- ``train.amp`` / ``infer --half``: float16 on CUDA; bfloat16 on a CPU that runs it natively (AMX or
  AVX512-BF16 through oneDNN, :func:`cpu_bf16_supported`); float32 elsewhere, said in one log line
  (bfloat16 emulated on an older CPU is slower than float32).
- Channels-last (``channels_last_3d`` for volumes): oneDNN's native layout for its bfloat16
  convolutions, used with CPU autocast (``benchmarks/train_speed.py --synthetic`` measures it).
- ``train.compile``: ``torch.compile`` of the training forward (off by default: its compile time is
  paid at every start and it did not pay on a 2-core CPU, see docs/benchmarks.md).

The loss always sees float32 logits (the training step casts them before the loss).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "autocast",
    "autocast_dtype",
    "compile_network",
    "cpu_bf16_supported",
    "half_dtype",
    "memory_format",
    "to_memory_format",
]

_log = logging.getLogger(__name__)
_CPUINFO = Path("/proc/cpuinfo")
_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}


def _cpuinfo_flags() -> set[str]:
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_bf16_supported() -> bool:
    """True when this CPU runs bfloat16 convolutions and matmuls natively through oneDNN (AMX tiles
    or AVX512-BF16); torch's own probes first, the flags of /proc/cpuinfo where they are missing."""
    if not torch.backends.mkldnn.is_available():
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if all(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes)
    return bool(_BF16_FLAGS & _cpuinfo_flags())


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype of mixed precision on ``device``, or None for float32: float16 on CUDA,
    bfloat16 on a CPU with native support; elsewhere None, logged once per call that asked for it."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    _log.warning("mixed precision: this %s has no native bfloat16 (AMX / AVX512-BF16): training in float32",
                 device.type)  # fmt: skip
    return None


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """``torch.autocast`` for ``device`` (float16 on CUDA, bfloat16 on CPU) or a no-op when not
    ``enabled``. Callers decide ``enabled`` once, with :func:`autocast_dtype`."""
    if not enabled:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def half_dtype(device: torch.device) -> torch.dtype:
    """Weights' dtype for half-precision inference: float16 on CUDA, bfloat16 on a CPU with native
    support, float32 (one log line) elsewhere."""
    return autocast_dtype(device, True) or torch.float32


def memory_format(device: torch.device, spatial_dims: int, amp: bool) -> torch.memory_format:
    """Channels-last (``channels_last_3d`` for volumes) with CPU mixed precision, where oneDNN's
    bfloat16 kernels use it natively; ``contiguous_format`` otherwise."""
    if device.type != "cpu" or not amp:
        return torch.contiguous_format
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


def to_memory_format(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``x`` in layout ``fmt`` (a no-op for ``contiguous_format`` or a tensor already in it)."""
    return x if fmt == torch.contiguous_format else x.contiguous(memory_format=fmt)


def compile_network(forward: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(forward)`` when ``enabled`` (compiled at its first call: tens of seconds on a
    CPU, logged), else ``forward`` unchanged. The bare network stays what checkpoints hold."""
    if not enabled:
        return forward
    _log.warning("train.compile: compiling the network with torch.compile at the first step (can take minutes)")
    return torch.compile(forward)
