"""Loss and network names for the help texts, without importing torch (``medseg_dfl.choices``
lists them once; the registries build exactly those)."""

from __future__ import annotations

import inspect

from medseg_dfl.choices import LOSS_NAMES, NETWORK_NAMES

__all__ = ["LOSS_NAMES", "NETWORK_NAMES", "names_epilog", "with_names"]



def names_epilog() -> str:
    return (
        f"\n\nLosses (loss.name): {', '.join(LOSS_NAMES)}."
        f"\n\nNetworks (network.name): {', '.join(NETWORK_NAMES)}."
    )


def with_names(doc: str | None) -> str:
    """A command's docstring (paragraphs re-flowed, as Typer shows them) followed by the names."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc or "").split("\n\n")]
    return "\n\n".join(paragraphs) + names_epilog()
