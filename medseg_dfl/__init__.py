"""medseg-dfl: medical image segmentation with the Dual Focal Loss on MONAI.

The public API is re-exported here and imported on first use (PEP 562). This is the one lazy
import in the package, on purpose: every ``medseg-dfl`` command imports this package first, and
plain imports here would load torch and MONAI (seconds, tens of seconds on a busy machine) before
``--help`` or an argument check. Everywhere else imports are at the top of modules.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DualFocalLoss": "medseg_dfl.losses.dual_focal",
    "DiceDualFocalLoss": "medseg_dfl.losses.compound",
    "AdaptiveClassWeights": "medseg_dfl.losses.class_weights",
    "dual_focal_loss": "medseg_dfl.losses.functional",
    "build_loss": "medseg_dfl.losses.registry",
    "LOSS_NAMES": "medseg_dfl.losses.registry",
    "Config": "medseg_dfl.config",
    "load_config": "medseg_dfl.config",
    "build_network": "medseg_dfl.networks",
    "preprocess_dataset": "medseg_dfl.data.preprocess",
    "generate_sample_data": "medseg_dfl.data.synthetic",
    "train": "medseg_dfl.engine.training",
    "Predictor": "medseg_dfl.engine.inference",
    "predict_folder": "medseg_dfl.engine.inference",
    "evaluate_folders": "medseg_dfl.engine.evaluation",
    "compare_losses": "medseg_dfl.engine.compare",
    "count_cells": "medseg_dfl.engine.counting",
    "fetch_dataset": "medseg_dfl.datasets.registry",
    "list_datasets": "medseg_dfl.datasets.registry",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medseg_dfl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
