"""How the CLI shows the library's progress reports (``medseg_dfl.progress``).

On a terminal: a Rich bar (it starts again when the count goes back or the total changes: a new
epoch or phase). Otherwise (a log file, CI, ``nohup``): one plain line on stderr when a unit of work is
finished (``done == total``: an epoch, a phase) and every ``every`` items in between (files), so a
long run still says where it is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from medseg_dfl.progress import ProgressCallback

__all__ = ["cli_progress"]


class _PlainLines:
    def __init__(self, label: str, every: int, stream: TextIO) -> None:
        self.label, self.every, self.stream = label, every, stream

    def __call__(self, done: int, total: int | None, message: str = "") -> None:
        finished = total is not None and done >= total
        if not (finished or (self.every and done and done % self.every == 0)):
            return
        count = f"{done}/{total}" if total is not None else str(done)
        print(f"{self.label} {count}" + (f"  {message}" if message else ""), file=self.stream, flush=True)


class _RichBar:
    def __init__(self, label: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.label = label
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[message]}", markup=False), console=Console(file=stream),
        )
        self.task: Any = None
        self.last = (0, None)

    def __call__(self, done: int, total: int | None, message: str = "") -> None:
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=total, message=message)
        elif done < self.last[0] or total != self.last[1]:  # a new epoch or phase: the bar starts again
            self.bar.reset(self.task, total=total, message=message)
        self.bar.update(self.task, completed=done, total=total, message=message)
        self.last = (done, total)


@contextlib.contextmanager
def cli_progress(label: str, *, enabled: bool = True, every: int = 0,
                 stream: TextIO | None = None) -> Iterator[ProgressCallback | None]:  # fmt: skip
    """A progress callback for one command: a Rich bar when ``stream`` (stderr) is a terminal, else
    plain lines (see the module docstring); None when not ``enabled`` (``--quiet``)."""
    stream = stream or sys.stderr
    if not enabled:
        yield None
        return
    if not stream.isatty():
        yield _PlainLines(label, every, stream)
        return
    bar = _RichBar(label, stream)
    with bar.bar:
        yield bar
