"""`medseg-dfl train` (not implemented yet)."""

from __future__ import annotations

from medseg_dfl.cli._common import fail


def command() -> None:
    """Not implemented yet."""
    fail("medseg-dfl train is not implemented yet")
