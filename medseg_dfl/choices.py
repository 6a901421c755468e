"""The names a config may choose for ``loss.name`` and ``network.name``, and the ranges of the values
a config and a command-line flag share (sliding-window overlap, the smear scale): the lowest layer,
no imports.

One list each. :mod:`medseg_dfl.losses.registry` builds exactly these losses and
:mod:`medseg_dfl.networks` exactly these MONAI networks (a test keeps them equal);
:mod:`medseg_dfl.config` checks a config against them without importing either (so neither has to
import the other), and the CLI lists them in its help without importing torch. The range checks are
here for the same reason: the config, the predictor and the CLI's argument checks (which answer
before torch is imported) apply one rule with one message.
"""

from __future__ import annotations

__all__ = ["LOSS_NAMES", "NETWORK_NAMES", "check_overlap", "check_scale_flags"]

LOSS_NAMES: tuple[str, ...] = (
    "dfl", "dfl-acw", "dfl-learnable", "dice-dfl", "ce", "focal", "dice", "dice-ce", "dice-focal",
    "dice-focal-softmax", "wce", "tversky", "focal-tversky",
)  # fmt: skip
# Class names in monai.networks.nets; config names are matched case-insensitively.
NETWORK_NAMES: tuple[str, ...] = ("UNet", "BasicUNet", "AttentionUnet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR")


def check_overlap(overlap: float, what: str = "overlap") -> float:
    """Sliding-window overlap as the predictor takes it, a fraction in [0, 1) (1 would never move
    the window): ``ValueError`` naming ``what`` otherwise. ``inference.overlap``, ``Predictor``,
    ``infer --tile-overlap`` and ``count --tile-overlap`` all check it here."""
    if isinstance(overlap, bool) or not 0.0 <= overlap < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {overlap}")
    return float(overlap)


def check_scale_flags(cell_diameter: float | None, pixel_size: float | None) -> None:
    """The one check of a given smear scale (``--cell-diameter`` px, ``--pixel-size`` um per px):
    positive when given, ``ValueError`` naming the flag otherwise."""
    for name, value, unit in (("--cell-diameter", cell_diameter, "pixels"), ("--pixel-size", pixel_size, "microns")):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a positive number of {unit}, got {value}")
