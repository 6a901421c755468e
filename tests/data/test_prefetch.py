"""prefetched(): order, bounded look-ahead, errors and early stops, torch threads; and an epoch of
train_one_epoch gives the same losses with the prefetch thread as without it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from medseg_dfl.data.prefetch import prefetched


def _recording(count: int, made: list, fail_at: int | None = None, closed: list | None = None):
    try:
        for index in range(count):
            if index == fail_at:
                raise ValueError(f"bad item {index}")
            made.append((index, threading.get_ident(), torch.get_num_threads()))
            yield index
    finally:
        if closed is not None:
            closed.append(threading.get_ident())


def test_items_come_in_order_and_are_made_in_another_thread_with_one_torch_thread():
    made: list = []
    threads_before = torch.get_num_threads()
    assert list(prefetched(_recording(5, made))) == [0, 1, 2, 3, 4]
    assert [index for index, _, _ in made] == [0, 1, 2, 3, 4]
    assert {ident for _, ident, _ in made} != {threading.get_ident()}
    assert {threads for _, _, threads in made} == {1}
    assert torch.get_num_threads() == threads_before


def test_producer_runs_at_most_depth_items_ahead():
    made: list = []
    items = prefetched(_recording(10, made), depth=2)
    assert next(items) == 0
    deadline = time.monotonic() + 10  # let the producer run as far as it may (slow on a busy machine)
    while len(made) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    # item 0 taken, items 1-2 queued, item 3 made and waiting for a free place; no further
    assert len(made) == 4
    items.close()


def test_error_in_source_is_raised_in_consumer_after_the_good_items():
    items = prefetched(_recording(5, [], fail_at=2))
    assert next(items) == 0
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad item 2"):
        next(items)


def test_leaving_early_stops_the_producer_and_closes_the_source():
    closed: list = []
    items = prefetched(_recording(1000, [], closed=closed))
    assert next(items) == 0
    items.close()
    assert len(closed) == 1 and closed[0] != threading.get_ident()
    assert not any(t.name == "medseg-dfl-prefetch" for t in threading.enumerate())


def test_depth_below_one_is_rejected():
    with pytest.raises(ValueError, match="depth must be >= 1, got 0"):
        next(prefetched(iter([1]), depth=0))


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    from medseg_dfl.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("smears")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0)  # 4 train, 1 val
    return root


@pytest.mark.slow  # two tiny trainings: ~4 s idle, more on a busy machine
def test_an_epoch_trains_the_same_with_and_without_the_prefetch_thread(smears, monkeypatch):
    import medseg_dfl.engine.training as training
    from medseg_dfl.config import config_from_dict
    from medseg_dfl.engine.components import build_components
    from medseg_dfl.engine.distributed import DistContext

    def config(prefetch: bool):
        return config_from_dict({
            "experiment": {"name": "tiny", "seed": 0},
            "data": {"root": str(smears), "cache": "memory", "prefetch": prefetch},
            "transforms": {"patch_size": [32, 32], "num_samples": 2},  # affine and intensity augmentation on
            "network": {"kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}},
            "loss": {"name": "ce"},  # no compilation
            "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 3},  # cycles the 2-batch loader
        })  # fmt: skip

    def losses(prefetch: bool) -> tuple[list[float], int]:
        cfg, calls = config(prefetch), []
        real = training.prefetched
        monkeypatch.setattr(training, "prefetched", lambda batches: calls.append(1) or real(batches))
        torch.manual_seed(0)
        parts = build_components(cfg, torch.device("cpu"), DistContext())
        seen: list[float] = []
        for epoch in range(2):
            training.seed_epoch(cfg, epoch, parts.train_loader)
            training.train_one_epoch(parts, cfg, on_step=lambda done, mean: seen.append(mean))
        monkeypatch.undo()
        return seen, len(calls)

    (with_thread, threaded), (without, unthreaded) = losses(True), losses(False)
    assert (threaded, unthreaded) == (2, 0)  # data.prefetch: false draws batches in the loop itself
    assert len(with_thread) == 6
    assert with_thread == without  # bit for bit: same batches, same order, same random draws
