"""DDP helpers without a process group, and a real 2-process gloo run under torchrun."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.components import build_components
from medseg_dfl.engine.distributed import (
    DistContext,
    all_reduce_sum,
    average_gradients,
    broadcast_object,
    init_distributed,
    is_main_process,
)
from medseg_dfl.engine.scoring import validate

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_single_process_without_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and not ctx.distributed and ctx.is_main and is_main_process(ctx)
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(t, ctx).tolist() == [1.0, 2.0]
    assert broadcast_object({"a": 1}, ctx) == {"a": 1}
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    average_gradients([p], ctx)
    assert p.grad.tolist() == [3.0, 3.0]


def test_bad_world_size_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        init_distributed("cpu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SCRIPT = """
import json, os, sys
from pathlib import Path
from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.training import train

cfg = config_from_dict(json.loads(sys.argv[1]))
result = train(cfg, Path(sys.argv[2]), progress=None)
out = Path(sys.argv[3]) / f"rank{result.rank}.json"
out.write_text(json.dumps({"rows": result.metrics, "world": os.environ["WORLD_SIZE"]}))
"""


@pytest.mark.slow
def test_two_process_gloo_run(tmp_path):
    from medseg_dfl.data.synthetic import generate_sample_data

    data = tmp_path / "data"
    generate_sample_data(data, "blood-smear", count=7, size=48, seed=1, val_fraction=0.45)  # 4 train, 3 val
    values = {
        "data": {"root": str(data), "cache": "memory"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1},
        "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}},
        "loss": {"name": "dfl-learnable"},
        "train": {"epochs": 1, "batch_size": 1},
    }
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    # An explicit free port on the loopback: parallel test runs on one machine must not meet.
    command = [str(TORCHRUN), "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(script), json.dumps(values), str(run), str(tmp_path)]  # fmt: skip
    # Own session: on a time-out, kill torchrun *and* its workers (no orphaned ranks left behind).
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"torchrun timed out; stderr tail: {stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.csv", "split.json", "train.log"
    ]  # fmt: skip
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    row, other = (ranked["rows"][0] for ranked in (rank0, rank1))
    assert rank0["world"] == "2" and len(rank0["rows"]) == 1
    del row["seconds"], other["seconds"]  # wall time is each rank's own
    assert row == pytest.approx(other, nan_ok=True, rel=0, abs=0)  # every metric reduced over ranks
    # Each rank validated its shard (2 + 1 images); the reduced Dice equals one process on all 3.
    cfg = config_from_dict(values)
    parts = build_components(cfg, torch.device("cpu"), DistContext())
    parts.model.load_state_dict(load_checkpoint(run / "last.pt")["model_state"])
    parts.loss_fn.load_state_dict(load_checkpoint(run / "last.pt")["loss_state"])
    # parts.amp: the precision the run validated in (bfloat16 autocast on a CPU with native support)
    single = validate(parts.model, parts.loss_fn, parts.val_loader, cfg, torch.device("cpu"), DistContext(), parts.amp)
    for name, dice in zip(cfg.data.class_names, single.dice, strict=True):
        assert row[f"dice_{name}"] == pytest.approx(dice, abs=1e-6, nan_ok=True)
    assert row["val_loss"] == pytest.approx(single.loss, rel=1e-5)


@pytest.mark.parametrize(
    ("requested", "expected"), [(None, "cpu"), ("auto", "cpu"), ("cpu", "cpu"), (torch.device("cpu"), "cpu")]
)
def test_resolve_device_without_cuda(requested, expected, monkeypatch):
    from medseg_dfl.engine.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(requested) == torch.device(expected)


@pytest.mark.parametrize(("requested", "message"), [("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"),
                                                    ("gpu", "not one of auto, cpu, cuda"), ("meta", "not one of")])
def test_resolve_device_rejects_bad_or_missing_devices(requested, message, monkeypatch):
    from medseg_dfl.engine.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=message):
        resolve_device(requested)


def test_bare_cuda_means_this_process_gpu(monkeypatch):
    from medseg_dfl.engine.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == torch.device("cuda", 3)  # torchrun's LOCAL_RANK
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # explicit rank wins
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept


def test_torchrun_rank_is_read_by_the_distributed_module_only(monkeypatch):
    from medseg_dfl.engine.distributed import torchrun_rank

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert torchrun_rank() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert torchrun_rank() == (2, 3)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="RANK=3 is outside WORLD_SIZE=3"):
        torchrun_rank()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x' must be an integer"):
        torchrun_rank()
    package = Path(__file__).resolve().parents[2] / "medseg_dfl"
    readers = sorted(
        str(p.relative_to(package)) for p in package.rglob("*.py")
        if any(k in p.read_text(encoding="utf-8") for k in ('environ.get("RANK', 'environ.get("WORLD_SIZE', "environ['RANK",
                                            "get_rank()"))
    )  # fmt: skip
    assert readers == ["engine/distributed.py"]
