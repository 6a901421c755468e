"""The names a config may choose for ``loss.name`` and ``network.name``: the lowest layer, no imports.

One list each. :mod:`medseg_dfl.losses.registry` builds exactly these losses and
:mod:`medseg_dfl.networks` exactly these MONAI networks (a test keeps them equal);
:mod:`medseg_dfl.config` checks a config against them without importing either (so neither has to
import the other), and the CLI lists them in its help without importing torch.
"""

from __future__ import annotations

__all__ = ["LOSS_NAMES", "NETWORK_NAMES"]

LOSS_NAMES: tuple[str, ...] = (
    "dfl", "dfl-acw", "dfl-learnable", "dice-dfl", "ce", "focal", "dice", "dice-ce", "dice-focal",
    "dice-focal-softmax", "wce", "tversky", "focal-tversky",
)  # fmt: skip
# Class names in monai.networks.nets; config names are matched case-insensitively.
NETWORK_NAMES: tuple[str, ...] = ("UNet", "BasicUNet", "AttentionUnet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR")
