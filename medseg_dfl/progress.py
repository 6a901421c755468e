"""The one progress interface of the library.

Library functions that do long work take ``progress: ProgressCallback | None`` and call it as
``progress(done, total, message)`` (``total`` None when unknown). They never draw anything: the
CLI decides how to show it (a Rich bar on a terminal, one plain line per step or per N files in a
log; see ``medseg_dfl/cli/_progress.py``).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback", "report"]

ProgressCallback = Callable[[int, "int | None", str], None]


def report(progress: ProgressCallback | None, done: int, total: int | None, message: str = "") -> None:
    """Call ``progress`` when one was given (so library code needs no ``if`` at every step)."""
    if progress is not None:
        progress(done, total, message)
