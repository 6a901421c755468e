"""Loss and network names for the help texts, without importing torch.

The registries (``medseg_dfl.losses.registry.LOSS_NAMES``, ``medseg_dfl.networks.NETWORK_NAMES``)
decide the names; these copies only let ``--help`` list them in a blink, and a test keeps them equal.
"""

from __future__ import annotations

__all__ = ["LOSS_NAMES", "NETWORK_NAMES", "names_epilog"]

LOSS_NAMES = ("dfl", "dfl-acw", "dfl-learnable", "dice-dfl", "ce", "focal", "dice", "dice-ce", "dice-focal",
              "dice-focal-softmax", "wce", "tversky", "focal-tversky")  # fmt: skip
NETWORK_NAMES = ("UNet", "BasicUNet", "AttentionUnet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR")


def names_epilog() -> str:
    return (
        f"\n\nLosses (loss.name): {', '.join(LOSS_NAMES)}."
        f"\n\nNetworks (network.name): {', '.join(NETWORK_NAMES)}."
    )
