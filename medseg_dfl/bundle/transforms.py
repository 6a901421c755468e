"""Post-processing transforms for MONAI bundles that give the masks ``medseg-dfl infer`` gives.

A bundle's evaluator hands each decollated item (``"pred"``: logits, C x spatial) to its
``postprocessing`` Compose. The first two dictionary transforms apply *the same functions* as
``infer`` (:mod:`medseg_dfl.engine.postprocess`, not re-implementations of them), so the softmax,
the background fill of regions the foreground crop removed, and the argmax tie-breaking are
bit-for-bit those of ``infer``; MONAI's ``Activationsd``/``AsDiscreted`` round differently and
flip the odd near-tied pixel. :class:`SaveRowsFirstd` writes a 2D mask held rows first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, SaveImaged

from medseg_dfl.engine.postprocess import background_fill_and_argmax_, label_dtype, softmax_

__all__ = ["ClassProbabilitiesd", "ProbabilitiesToLabelsd", "SaveRowsFirstd"]


class ClassProbabilitiesd(MapTransform):
    """Softmax over the class axis (0) of ``d[key]`` (C, spatial logits), as ``infer`` computes it."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            logits = d[key]
            values = logits.as_tensor() if isinstance(logits, MetaTensor) else torch.as_tensor(logits)
            probs = softmax_(values.detach().to("cpu", torch.float32).clone())
            d[key] = MetaTensor(probs, meta=logits.meta) if isinstance(logits, MetaTensor) else probs
        return d


class ProbabilitiesToLabelsd(MapTransform):
    """(C, spatial) probabilities -> (1, spatial) class indices, uint8 (uint16 above 256 classes).

    Probability mass missing after ``Invertd`` (regions the foreground crop removed come back as
    zeros) goes to class 0 first, exactly as in ``infer``. The meta data (file name, affine) stay,
    so ``SaveImaged`` writes the mask on the input's grid.
    """

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.dtype = label_dtype(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            probs = d[key]
            values = probs.as_tensor() if isinstance(probs, MetaTensor) else torch.as_tensor(probs)
            array = np.array(values.detach().cpu(), dtype=np.float32)  # a copy: the fill is in place
            mask = torch.from_numpy(background_fill_and_argmax_(array, self.dtype)[None].astype(np.int32))
            d[key] = MetaTensor(mask, meta=probs.meta) if isinstance(probs, MetaTensor) else mask
        return d


class SaveRowsFirstd(SaveImaged):
    """MONAI ``SaveImaged`` for 2D images held rows first, (H, W), as medseg-dfl's readers load them:
    MONAI's PNG writer swaps the first two axes unless told not to (its ``reverse_indexing``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_options(write_kwargs={"reverse_indexing": False})
