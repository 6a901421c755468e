"""Prepare the next training batch in a background thread while the current step runs.

With ``data.num_workers: 0`` (the default on 2 cores) the random crops and augmentation of a batch
used to run between two steps, in the main process: 20-30 % of the step time on the 2D smears
(docs/benchmarks.md). The step spends most of its time inside torch kernels, which release the GIL,
so one thread can draw the next batch meanwhile. A worker *process* does the same but copies every
batch between processes and, on 2 cores, made the epoch no faster.

The batches, their order and every random number are those of the plain loop: one producer thread
drains the same iterator in the same order, at most ``depth`` batches ahead, and stops when the
iterator ends (an epoch's ``steps_per_epoch`` batches), so nothing is drawn past the epoch that the
next epoch's reseeding would miss. An error in the producer is raised in the consumer at the batch
where it happened. We do not use MONAI's ``ThreadDataLoader``: its thread ends silently on an error
(the epoch would just be shorter) and its consumer polls.

The producer runs torch single-threaded (``threads``): the data transforms work on small patches,
where a second OpenMP thread costs more to wake than it saves, and the step keeps both cores.
``torch.set_num_threads`` in a thread sets that thread's OpenMP team (the main thread keeps its
own) and the default of threads started while it runs; it is restored when the producer ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

import torch

__all__ = ["prefetched"]

T = TypeVar("T")
_ITEM, _END, _ERROR = range(3)
_POLL_SECONDS = 0.05  # how often a blocked producer checks whether the consumer has gone


def _put(box: queue.Queue, entry: tuple[int, object], stop: threading.Event) -> bool:
    """Put ``entry`` unless the consumer has stopped; True when it was put."""
    while not stop.is_set():
        try:
            box.put(entry, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _produce(source: Iterator[T], box: queue.Queue, stop: threading.Event, threads: int | None) -> None:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for item in source:
            if not _put(box, (_ITEM, item), stop):
                return
        _put(box, (_END, None), stop)
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
        _put(box, (_ERROR, error), stop)
    finally:
        close = getattr(source, "close", None)
        if close is not None:  # a generator is closed in the thread that ran it
            close()
        if threads is not None:
            torch.set_num_threads(previous)


def prefetched(source: Iterator[T], depth: int = 1, threads: int | None = 1) -> Iterator[T]:
    """The items of ``source`` in order, each made in a background thread while the previous one is used.

    ``depth``: items kept ready (>= 1); ``threads``: torch threads of the producer (None: leave
    them). Leaving the loop early (``break``, an error in the consumer) stops the producer after
    the item it is making; an exception in ``source`` is raised here, in the consumer.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    # torch sets each thread's OpenMP team size on its first parallel op, from the process default
    # that the producer lowers while it runs: settle this (the consumer's) thread's before.
    torch.get_num_threads()
    producer = threading.Thread(target=_produce, args=(source, box, stop, threads), name="medseg-dfl-prefetch",
                                daemon=True)  # fmt: skip
    producer.start()
    try:
        while True:
            kind, value = box.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
