"""Segmenting a 2D smear at the model's cell scale: the one owner of "resample the image so its red
cells are as large as in the training images, run the network there, resample the class
probabilities back to the image's own size".

``count`` (:mod:`medseg_dfl.engine.counting`) and ``infer`` (:mod:`medseg_dfl.engine.inference`)
both use it. A model's scale is the red-cell diameter (px) of its training images, recorded in the
checkpoint's ``scale`` entry (:func:`medseg_dfl.cells.scale.training_scale`); an input's scale
comes from :func:`medseg_dfl.cells.scale.resolve_scale` (``--cell-diameter``, ``--pixel-size``,
file metadata or an estimate). Images are resampled before the intensity normalisation (it may be
per image), bilinearly and antialiased when shrinking. Arrays are rows first, (C, H, W), as
everywhere for 2D images (the network's input and output included).

This module takes a predictor by its interface (:class:`ScaledPredictor`), so it needs nothing
from :mod:`medseg_dfl.engine.inference`, which imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medseg_dfl.cells.instances import cell_kind
from medseg_dfl.cells.scale import SCALE_FILE, CellScale, resolve_scale, write_scale_file
from medseg_dfl.choices import check_scale_flags
from medseg_dfl.engine.output_claims import claim_output
from medseg_dfl.io.geometry import ImageGeometry

__all__ = [
    "GEOMETRY_KEY",
    "LOADED_KEY",
    "ModelScale",
    "ObjectInput",
    "ScaledInput",
    "ScaledPredictor",
    "inference_model_scale",
    "inference_reader",
    "load_steps",
    "post_load_steps",
    "predict_at_model_scale",
    "recorded_model_scale",
    "resample_to_model_scale",
    "resize_rows_first",
    "to_model_scale",
    "write_scale_records",
]

_LOAD_STEPS = (LoadImaged, EnsureChannelFirstd)
# Keys a predictor's loaded/preprocessed dict carries besides "image": the source's ImageGeometry
# (for the writers) and, when asked for, the image as loaded (for the overlay). Not "image_...":
# MONAI's Spacingd takes every such key for the image's meta dict.
GEOMETRY_KEY = "source_geometry"
LOADED_KEY = "source_image"


class ScaledPredictor(Protocol):
    """What this module needs of :class:`medseg_dfl.engine.inference.Predictor`."""

    transforms: Any
    cfg: Any
    class_names: list[str]
    cell_scale: dict[str, Any] | None

    def predict_probabilities(self, data: dict[str, Any]) -> Any: ...

    def preprocess(self, path: str | Path, keep_loaded: bool = False) -> dict[str, Any]: ...

    def load(self, path: str | Path) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ModelScale:
    """The ruler of a model's training images (px) and where that figure comes from: the red-cell
    diameter of a smear model (``kind`` "rbc"), or the diameter of the object a single-cell model
    segments (``kind`` "object": white-cell crops; the factor is searched per input,
    :mod:`medseg_dfl.engine.scale_search`)."""

    cell_diameter_px: float
    source: str
    kind: str = "rbc"
    # Single-object models whose training crops each hold one object: the class that marks it (the
    # nucleus; medseg_dfl.cells.object_scale.single_object_core_class). None: keep every object.
    core_class: int | None = None


@dataclass
class ObjectInput:
    """One input of a single-cell model, read but not resampled: its factor is searched with the network."""

    image: torch.Tensor  # (C, H, W) raw, float32
    target: float  # the object's diameter in the model's training images (px)
    object_diameter: float | None  # --cell-diameter: the object's diameter in the input (None: search)
    geometry: ImageGeometry | None = None
    loaded: torch.Tensor | None = None
    core_class: int | None = None  # ModelScale.core_class: only that object is kept (None: every one)
    diameter_source: str = "--cell-diameter"  # where object_diameter came from (scale.json's "source")


@dataclass
class ScaledInput:
    """One input resampled to the model's scale and preprocessed, ready for the network."""

    data: dict[str, Any]  # {"image": (C, H, W) MetaTensor} at the model's scale, normalised
    size: tuple[int, int]  # (H, W) of the input: where the probabilities go back to
    scale: CellScale  # the input's own scale
    factor: float  # model diameter / input diameter (< 1: the input was shrunk)
    geometry: ImageGeometry | None = None  # the input file's, for the writers
    loaded: torch.Tensor | None = None  # (C, H, W) the input as loaded, not normalised (for the overlay)


def recorded_model_scale(entry: dict[str, Any] | None, class_names: Sequence[str], spatial_dims: int) -> ModelScale | None:
    """The checkpoint's recorded ruler of a 2D model, or None: the red-cell diameter when the model
    has a red-cell class, else the segmented object's diameter when recorded (white-cell crops,
    whose red cells are no ruler: :mod:`medseg_dfl.cells.object_scale`)."""
    if spatial_dims != 2 or not entry:
        return None
    if any(cell_kind(name) == "rbc" for name in class_names):
        if not entry.get("cell_diameter_px"):
            return None
        return ModelScale(float(entry["cell_diameter_px"]), f"checkpoint ({entry.get('source', 'recorded')})")
    if entry.get("object_diameter_px"):
        source = f"checkpoint ({entry.get('object_source', 'recorded')})"
        core = entry.get("core_class")
        return ModelScale(float(entry["object_diameter_px"]), source, kind="object",
                          core_class=None if core is None else int(core))  # fmt: skip
    return None


def inference_model_scale(
    entry: dict[str, Any] | None,
    class_names: Sequence[str],
    spatial_dims: int,
    rescale: bool = True,
    cell_diameter: float | None = None,
    pixel_size: float | None = None,
) -> ModelScale | None:
    """The scale ``infer`` rescales its inputs to (None: inputs run at their own size).

    ``ValueError`` for a non-positive ``cell_diameter``/``pixel_size``, for either one with
    ``rescale=False``, and for either one with a model that records no red-cell scale.
    """
    check_scale_flags(cell_diameter, pixel_size)
    given = "--cell-diameter" if cell_diameter is not None else "--pixel-size" if pixel_size is not None else None
    if not rescale:
        if given:
            raise ValueError(f"{given} sets the scale to rescale to; it cannot be combined with --no-rescale")
        return None
    scale = recorded_model_scale(entry, class_names, spatial_dims)
    if scale is None and given:
        raise ValueError(f"{given}: this model records no scale (a 2D microscopy checkpoint does), so its "
                         f"inputs are not rescaled; leave {given} out")  # fmt: skip
    if scale is not None and scale.kind == "object" and pixel_size is not None:
        raise ValueError("--pixel-size: this model's ruler is the cell it segments, not red cells; give "
                         "--cell-diameter (that cell's diameter in pixels) or let infer search the scale")  # fmt: skip
    return scale


def resize_rows_first(array: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) float -> (C, *size), bilinear; antialiased when shrinking."""
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    shrink = size[0] < array.shape[-2] or size[1] < array.shape[-1]
    return F.interpolate(array[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]


def load_steps(transforms: Compose) -> Compose:
    """The reading steps of a checkpoint's inference transforms (``LoadImaged``, ``EnsureChannelFirstd``)."""
    return Compose([t for t in transforms.transforms if isinstance(t, _LOAD_STEPS)])


def post_load_steps(transforms: Compose) -> Compose:
    """The rest of them (2D: the intensity normalisation)."""
    return Compose([t for t in transforms.transforms if not isinstance(t, _LOAD_STEPS)])


def resample_to_model_scale(image: torch.Tensor, cell_diameter_px: float, model_diameter: float) -> torch.Tensor:
    """A raw (C, H, W) image whose red cells are ``cell_diameter_px`` px, resampled so they are
    ``model_diameter`` px (each side at least 8 px). ``infer`` and the bundles' ``ToModelScaled``."""
    height, width = image.shape[-2:]
    factor = model_diameter / cell_diameter_px
    return resize_rows_first(image, (max(8, round(height * factor)), max(8, round(width * factor))))


def to_model_scale(transforms: Compose, image: torch.Tensor, scale: CellScale, model_diameter: float) -> ScaledInput:
    """Resample a raw (C, H, W) image so its red cells are ``model_diameter`` px, and normalise it."""
    height, width = image.shape[-2:]
    resized = resample_to_model_scale(image, scale.cell_diameter_px, model_diameter)
    data = post_load_steps(transforms)({"image": MetaTensor(resized)})
    return ScaledInput(data, (height, width), scale, model_diameter / scale.cell_diameter_px)


def predict_at_model_scale(predictor: ScaledPredictor, scaled: ScaledInput) -> tuple[torch.Tensor, tuple[float, float]]:
    """(classes, H, W) probabilities at the input's own size; the network's (wall, CPU) seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    probs = predictor.predict_probabilities(scaled.data)  # probabilities only: the mask comes at the input's size
    seconds = (time.perf_counter() - start, time.process_time() - cpu)
    probs = torch.from_numpy(np.asarray(probs))
    return resize_rows_first(probs, scaled.size), seconds


def inference_reader(
    predictor: ScaledPredictor, rescale: bool = True, cell_diameter: float | None = None,
    pixel_size: float | None = None, keep_loaded: bool = False, single_object: bool = True,
) -> tuple[Callable[[Path], Any], ModelScale | None]:
    """``infer``'s preprocessing of one input file, and the scale it rescales to (None: none).

    Smear models (:func:`inference_model_scale`): the image is read without normalising, its scale
    found (:func:`~medseg_dfl.cells.scale.resolve_scale`; the model's own where no cell is found,
    i.e. no resampling), and it comes as a :class:`ScaledInput`. Others: ``predictor.preprocess``.
    Either carries the file's geometry; ``keep_loaded``: also the image as loaded (for overlays).
    ``single_object=False``: a single-object model's inputs keep every object it segments.
    """
    model = inference_model_scale(predictor.cell_scale, predictor.class_names, predictor.cfg.data.spatial_dims,
                                  rescale, cell_diameter, pixel_size)  # fmt: skip
    if model is None:
        return functools.partial(predictor.preprocess, keep_loaded=keep_loaded), None
    if model.kind == "object":
        core = model.core_class if single_object else None
        return functools.partial(_read_object_input, predictor, model.cell_diameter_px, cell_diameter, keep_loaded,
                                 core), model  # fmt: skip

    def read(path: Path) -> ScaledInput:
        loaded = predictor.load(path)
        image = loaded["image"]  # (C, H, W), not normalised
        plain = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
        plain = plain.to(torch.float32)
        scale = resolve_scale(plain.permute(1, 2, 0).numpy(), path, cell_diameter, pixel_size,
                              model.cell_diameter_px)  # fmt: skip
        kept = plain.clone() if keep_loaded else None  # the normalisation may work in place
        scaled = to_model_scale(predictor.transforms, plain, scale, model.cell_diameter_px)
        return dataclasses.replace(scaled, geometry=loaded.get(GEOMETRY_KEY), loaded=kept)

    return read, model


def _read_object_input(predictor: ScaledPredictor, target: float, object_diameter: float | None,
                       keep_loaded: bool, core_class: int | None, path: Path) -> ObjectInput:  # fmt: skip
    loaded = predictor.load(path)
    image = loaded["image"]
    plain = (image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)).to(torch.float32)
    return ObjectInput(plain, target, object_diameter, loaded.get(GEOMETRY_KEY), plain.clone() if keep_loaded else None,
                       core_class)  # fmt: skip


def write_scale_records(
    output_dir: Path, input_path: Path, model: ModelScale, records: dict[Path, dict[str, Any]], wait_s: float = 30.0,
) -> Path:
    """``infer``'s scale.json: each input by its path below ``input_path``, merged with the entries
    of earlier runs and of concurrent ones (runs sharing the folder, torchrun ranks): the merge holds
    the file's claim (:mod:`~medseg_dfl.engine.output_claims`), waiting up to ``wait_s`` for it."""
    def name(source: Path) -> str:
        return source.relative_to(input_path).as_posix() if input_path.is_dir() else source.name

    named = {name(source): record for source, record in records.items()}
    deadline = time.monotonic() + wait_s
    while True:
        with claim_output(Path(output_dir) / SCALE_FILE) as ours:
            if ours or time.monotonic() > deadline:  # a claim held that long is another host's stuck run
                return write_scale_file(output_dir, model.cell_diameter_px, model.source, named, merge=True)
        time.sleep(0.05)
