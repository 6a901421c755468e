"""Transforms for MONAI bundles that give the masks ``medseg-dfl infer`` gives.

A smear model's bundle resamples each image to the model's red-cell scale before the intensity
normalisation (:class:`ToModelScaled`) and the class probabilities back to the image's own size
before the argmax (:class:`FromModelScaled`), with the functions ``infer`` uses
(:mod:`medseg_dfl.engine.rescale`, :func:`medseg_dfl.cells.scale.resolve_scale`). A single-cell
model's bundle does the same when given the cell's diameter (``infer --cell-diameter``) and keeps
the one cell after the argmax (:class:`KeepCoreObjectd`, ``infer``'s
:func:`~medseg_dfl.engine.postprocess.keep_core_object`).

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

from medseg_dfl.cells.scale import resolve_scale
from medseg_dfl.choices import check_scale_flags
from medseg_dfl.engine.postprocess import background_fill_and_argmax_, keep_core_object, label_dtype, softmax_
from medseg_dfl.engine.rescale import resample_to_model_scale, resize_rows_first

__all__ = ["SOURCE_SIZE_KEY", "ClassProbabilitiesd", "FromModelScaled", "KeepCoreObjectd", "ProbabilitiesToLabelsd",
           "SaveRowsFirstd", "ToModelScaled"]  # fmt: skip

# The data-dict key where ToModelScaled leaves each image's own (H, W) for FromModelScaled. Not
# "image_...": MONAI's Spacingd takes every such key for the image's meta dict.
SOURCE_SIZE_KEY = "source_size"


def _plain(value: Any) -> torch.Tensor:
    return value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)


class ToModelScaled(MapTransform):
    """A raw (C, H, W) image (before the intensity normalisation) resampled to the model's scale, as
    ``medseg-dfl infer`` does, with :func:`~medseg_dfl.engine.rescale.resample_to_model_scale`.

    ``kind`` "rbc" (a smear model, :class:`~medseg_dfl.engine.rescale.ModelScale`'s kind): red cells
    ``model_diameter`` px across; the image's own red-cell diameter from ``cell_diameter`` (px),
    ``pixel_size`` (um/px), the file's metadata (the image's ``filename_or_obj``) or an estimate
    (:func:`~medseg_dfl.cells.scale.resolve_scale`; no cells found: no resampling).

    ``kind`` "object" (a single-cell model): the cell it segments ``model_diameter`` px across, that
    cell being ``cell_diameter`` px in the image (``infer --cell-diameter``). None: no resampling,
    since ``infer`` would search the factor with the network, which a transform cannot; an estimate
    of red cells would be no ruler for a white-cell crop. ``pixel_size`` is refused, as ``infer``
    refuses ``--pixel-size`` for these models.

    The image's own (H, W) goes to ``d[size_key]`` (for :class:`FromModelScaled`).
    """

    def __init__(
        self, keys: KeysCollection, model_diameter: float, cell_diameter: float | None = None,
        pixel_size: float | None = None, size_key: str = SOURCE_SIZE_KEY, allow_missing_keys: bool = False,
        kind: str = "rbc",
    ) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        if not model_diameter or not model_diameter > 0:
            raise ValueError(f"model_diameter must be a positive number of pixels, got {model_diameter}")
        if kind not in ("rbc", "object"):
            raise ValueError(f"kind must be 'rbc' (a smear model) or 'object' (a single-cell model), got {kind!r}")
        check_scale_flags(cell_diameter, pixel_size)
        if kind == "object" and pixel_size is not None:
            raise ValueError(f"pixel_size {pixel_size}: a single-cell model's ruler is the cell it segments, not "
                             "red cells; give cell_diameter (that cell's diameter in pixels) instead")  # fmt: skip
        self.model_diameter = float(model_diameter)
        self.cell_diameter = None if cell_diameter is None else float(cell_diameter)
        self.pixel_size = None if pixel_size is None else float(pixel_size)
        self.size_key = size_key
        self.kind = kind

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            plain = _plain(image).to(torch.float32)
            if plain.ndim != 3:
                raise ValueError(f"ToModelScaled: expected a (C, H, W) image, got shape {tuple(plain.shape)}")
            path = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
            resized = self._object_scaled(plain) if self.kind == "object" else self._smear_scaled(plain, path)
            d[key] = MetaTensor(resized, meta=image.meta) if isinstance(image, MetaTensor) else resized
            d[self.size_key] = torch.tensor(plain.shape[-2:], dtype=torch.int64)
        return d

    def _smear_scaled(self, plain: torch.Tensor, path: str | None) -> torch.Tensor:
        scale = resolve_scale(plain.permute(1, 2, 0).numpy(), path or None, self.cell_diameter, self.pixel_size,
                              self.model_diameter)  # fmt: skip
        return resample_to_model_scale(plain, scale.cell_diameter_px, self.model_diameter)

    def _object_scaled(self, plain: torch.Tensor) -> torch.Tensor:
        if self.cell_diameter is None:
            return plain
        # infer's chain of floats (scale_search.predict_at_object_scale, then _run): the factor, the
        # input diameter it implies, then the factor again; so a side on a rounding edge rounds alike.
        factor = self.model_diameter / self.cell_diameter
        return resample_to_model_scale(plain, self.model_diameter / factor, self.model_diameter)


class FromModelScaled(MapTransform):
    """(classes, h, w) probabilities at the model's scale -> (classes, H, W) at the image's own size
    (``d[size_key]``, left there by :class:`ToModelScaled`), with ``infer``'s
    :func:`~medseg_dfl.engine.rescale.resize_rows_first`. Before :class:`ProbabilitiesToLabelsd`."""

    def __init__(self, keys: KeysCollection, size_key: str = SOURCE_SIZE_KEY, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.size_key = size_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        size = tuple(int(v) for v in torch.as_tensor(d[self.size_key]).reshape(-1).tolist())
        if len(size) != 2:
            raise ValueError(f"FromModelScaled: {self.size_key} must be (H, W), got {size}")
        for key in self.key_iterator(d):
            probs = d[key]
            back = resize_rows_first(_plain(probs).detach().to("cpu", torch.float32), size)
            d[key] = MetaTensor(back, meta=probs.meta) if isinstance(probs, MetaTensor) else back
        return d


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


class KeepCoreObjectd(MapTransform):
    """A (1, H, W) label map of a single-object model (a white-cell crop) with only its one object,
    split from what touches it: ``infer``'s :func:`~medseg_dfl.engine.postprocess.keep_core_object`
    with the checkpoint's ``core_class`` (the nucleus). After :class:`ProbabilitiesToLabelsd`, as
    ``infer`` keeps the cell after its argmax; a map without the core class is left as it is."""

    def __init__(self, keys: KeysCollection, core_class: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if isinstance(core_class, bool) or not isinstance(core_class, int) or core_class < 1:
            raise ValueError(f"core_class must be a foreground class index (an int >= 1), got {core_class!r}")
        self.core_class = core_class

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            labels = d[key]
            values = _plain(labels).detach().cpu()
            if values.ndim != 3 or values.shape[0] != 1:
                raise ValueError(f"KeepCoreObjectd: expected a (1, H, W) label map, got shape {tuple(values.shape)}")
            kept = keep_core_object(values[0].numpy(), self.core_class)
            mask = torch.from_numpy(np.ascontiguousarray(kept)[None])
            d[key] = MetaTensor(mask, meta=labels.meta) if isinstance(labels, MetaTensor) else mask
        return d


class SaveRowsFirstd(SaveImaged):
    """MONAI ``SaveImaged`` for 2D images held rows first, (H, W), as medseg-dfl's readers load them:
    MONAI's PNG writer swaps the first two axes unless told not to (its ``reverse_indexing``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_options(write_kwargs={"reverse_indexing": False})
