"""`medseg-dfl compare` (not implemented yet)."""

from __future__ import annotations

from medseg_dfl.cli._common import fail


def command() -> None:
    """Not implemented yet."""
    fail("medseg-dfl compare is not implemented yet")
