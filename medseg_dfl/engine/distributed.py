"""Multi-process training set-up (``torchrun``/DDP) and the few collective helpers we need.

The one owner of process rank and world size: only this module reads torchrun's environment.
Lower layers take the rank as a parameter (``data.datasets.build_loaders(..., rank=)``) instead of
looking it up, so nothing below the engine imports this module.

``torchrun`` exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (and nothing else), picks gloo on CPU and NCCL on CUDA, and
returns a :class:`DistContext` that is passed explicitly. Without those variables everything is a
single process and every helper is a no-op.

Single node, 2 processes::

    torchrun --nproc_per_node 2 -m medseg_dfl.cli train configs/blood_smear_2d.yaml

Two nodes (run on each node, NODE_RANK 0 and 1; the run directory must be on a shared filesystem
for ``--resume``, rank 0 writes every file)::

    torchrun --nnodes 2 --node_rank $NODE_RANK --nproc_per_node 4 \\
        --master_addr host0.example --master_port 29500 -m medseg_dfl.cli train CONFIG
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "average_gradients",
    "broadcast_object",
    "cleanup_distributed",
    "init_distributed",
    "is_main_process",
    "resolve_device",
    "torchrun_rank",
]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    # True when init_distributed joined the group itself (then cleanup leaves it).
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from err


def torchrun_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment without joining a process group; (0, 1)
    outside torchrun. For work that is only sharded (inference over a file list), not reduced."""
    world = max(_env_int("WORLD_SIZE", 1), 1)
    rank = _env_int("RANK", 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world


def resolve_device(requested: str | torch.device | None, local_rank: int | None = None) -> torch.device:
    """The one place that turns a device flag into a ``torch.device`` (training and inference).

    ``auto``/None -> CUDA when available, else CPU. A bare ``cuda`` means this process's GPU:
    ``local_rank``, or torchrun's ``LOCAL_RANK``, or 0. ``cuda:N`` and ``cpu`` are taken as given.
    """
    name = str(requested) if requested is not None else "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but torch sees no CUDA device (use --device cpu)")
        if device.index is None:
            index = local_rank if local_rank is not None else _env_int("LOCAL_RANK", 0)
            device = torch.device("cuda", index)
    return device


def init_distributed(device_type: str) -> DistContext:
    """Join the process group described by torchrun's environment (gloo on CPU, NCCL on CUDA)."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, backend, owns_group)


def cleanup_distributed(ctx: DistContext, synchronize: bool = True) -> None:
    """Leave the process group (only if :func:`init_distributed` joined one).

    ``synchronize``: first wait at a barrier for every rank and every earlier collective. Gloo's
    worker threads release a finished collective's tensors afterwards, which needs the GIL; tearing
    the group down while one still does deadlocks (seen with PyTorch 2.13). Skip it after an error on
    this rank only, where the other ranks may never reach the barrier.
    """
    if not (ctx.owns_group and dist.is_initialized()):
        return
    if synchronize:
        dist.barrier()
        time.sleep(0.05)  # GIL released: lets the worker threads finish releasing tensors
    dist.destroy_process_group()


def is_main_process(ctx: DistContext | None = None) -> bool:
    """True on rank 0 (or without a process group): the only process that writes files."""
    if ctx is not None:
        return ctx.is_main
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks (in place, and returned); identity for one process."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(params: Iterable[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average gradients of parameters DDP does not own (e.g. a loss's learnable scale)."""
    if not ctx.distributed:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad.div_(ctx.world_size)


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small control data and checkpoints)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
