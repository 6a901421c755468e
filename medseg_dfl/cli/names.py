"""Loss and network names for the help texts, without importing torch (``medseg_dfl.choices``
lists them once; the registries build exactly those)."""

from __future__ import annotations

from medseg_dfl.choices import LOSS_NAMES, NETWORK_NAMES

__all__ = ["LOSS_NAMES", "NETWORK_NAMES", "names_epilog"]



def names_epilog() -> str:
    return (
        f"\n\nLosses (loss.name): {', '.join(LOSS_NAMES)}."
        f"\n\nNetworks (network.name): {', '.join(NETWORK_NAMES)}."
    )
