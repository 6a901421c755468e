"""The one error type for bad input data: a one-line message ``"<file path>: <reason>"``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError"]


class DataError(ValueError):
    """A file that cannot be used as given. ``str(err)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        if reason is None:  # DataError("already formatted message")
            self.path, self.reason = None, " ".join(str(path).split())
            super().__init__(self.reason)
            return
        self.path = Path(path)
        self.reason = " ".join(reason.split())
        super().__init__(f"{path}: {self.reason}")
