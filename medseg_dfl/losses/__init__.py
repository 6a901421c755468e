"""medseg_dfl.losses: the Dual Focal Loss, its compound with Dice, class weights, and losses by name.

Names are imported on first use (PEP 562), so ``import medseg_dfl.losses.class_weights`` or a CLI's
``--help`` does not pay for importing MONAI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AdaptiveClassWeights": "medseg_dfl.losses.class_weights",
    "DiceDualFocalLoss": "medseg_dfl.losses.compound",
    "DualFocalLoss": "medseg_dfl.losses.dual_focal",
    "dual_focal_loss": "medseg_dfl.losses.functional",
    "LOSS_NAMES": "medseg_dfl.losses.registry",
    "LabelCrossEntropyLoss": "medseg_dfl.losses.registry",
    "build_loss": "medseg_dfl.losses.registry",
}
__all__ = [
    "AdaptiveClassWeights",
    "DiceDualFocalLoss",
    "DualFocalLoss",
    "LOSS_NAMES",
    "LabelCrossEntropyLoss",
    "build_loss",
    "dual_focal_loss",
]

if TYPE_CHECKING:  # for type checkers and IDEs
    from medseg_dfl.losses.class_weights import AdaptiveClassWeights
    from medseg_dfl.losses.compound import DiceDualFocalLoss
    from medseg_dfl.losses.dual_focal import DualFocalLoss
    from medseg_dfl.losses.functional import dual_focal_loss
    from medseg_dfl.losses.registry import LOSS_NAMES, LabelCrossEntropyLoss, build_loss


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medseg_dfl.losses' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
