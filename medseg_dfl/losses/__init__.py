"""medseg_dfl.losses: the Dual Focal Loss, its compound with Dice, class weights, losses by name, and
the deep-supervision loss of a network's training output."""

from medseg_dfl.losses.class_weights import AdaptiveClassWeights
from medseg_dfl.losses.compound import DiceDualFocalLoss
from medseg_dfl.losses.deep_supervision import supervised_loss
from medseg_dfl.losses.dual_focal import DualFocalLoss
from medseg_dfl.losses.functional import dual_focal_loss
from medseg_dfl.losses.registry import (
    LOSS_NAMES,
    LabelCrossEntropyLoss,
    build_loss,
    loss_from_config,
    resolve_loss,
)

__all__ = [
    "AdaptiveClassWeights",
    "DiceDualFocalLoss",
    "DualFocalLoss",
    "LOSS_NAMES",
    "LabelCrossEntropyLoss",
    "build_loss",
    "dual_focal_loss",
    "loss_from_config",
    "resolve_loss",
    "supervised_loss",
]
