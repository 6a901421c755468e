"""Inference from a checkpoint: one file (:meth:`Predictor.predict_file`) or a folder (:func:`predict_folder`).

The checkpoint alone says how to preprocess: its config rebuilds the network and the inference
transforms (``medseg_dfl.transforms``). Each image goes through MONAI ``sliding_window_inference``
(Gaussian blending by default): windows run on the compute device, the stitched logits stay on the
CPU, so memory grows with the volume and not with the number of windows. The softmax probabilities
are mapped back onto the loaded image's grid with ``build_inverse_postprocess`` (MONAI ``Invertd``),
then reduced by argmax, so a mask has the input's exact shape and the writers give it the input's
geometry.

A 2D blood-smear model (a red-cell class and a training scale in its checkpoint) instead sees each
input resampled so its red cells are as large as in training, and its probabilities are resampled
back to the input's size (:mod:`medseg_dfl.engine.rescale`, shared with ``count``). A 2D model
without a red-cell class that records the size of the object it segments (white-cell crops) sees
each input at the factor that makes that object as large as in training, searched with the network
(:mod:`medseg_dfl.engine.scale_search`). The scale each input was seen at goes to ``scale.json`` in
the output folder.

``predict_folder`` reads and preprocesses the next file in a background thread while the current
one is on the network, skips finished outputs (never overwrites without ``overwrite``), records bad
files and carries on, and under ``torchrun`` takes only this rank's share of the files (finding,
planning and prefetching: :mod:`medseg_dfl.engine.inference_folder`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medseg_dfl.cells.scale import CellScale
from medseg_dfl.choices import check_overlap
from medseg_dfl.config import Config, config_from_dict
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.distributed import resolve_device, torchrun_rank
from medseg_dfl.engine.ensemble import (
    AveragedProbabilities,
    check_same_preprocessing,
    mirrors_by_default,
    resolve_checkpoints,
    tta_flips,
)
from medseg_dfl.engine.inference_folder import InferenceSummary, find_inputs, pending_plans, prefetch
from medseg_dfl.engine.inference_options import InferenceOptions
from medseg_dfl.engine.output_claims import check_writable_folder, claim_output
from medseg_dfl.engine.postprocess import (
    keep_core_object,
    labels_from_probabilities,
    largest_component_classes,
    softmax_,
)
from medseg_dfl.engine.precision import half_dtype
from medseg_dfl.engine.prediction_io import OutputPlan, failure_reason, write_outputs
from medseg_dfl.engine.rescale import (
    GEOMETRY_KEY,
    LOADED_KEY,
    ObjectInput,
    ScaledInput,
    inference_reader,
    load_steps,
    post_load_steps,
    predict_at_model_scale,
    recorded_model_scale,
    write_scale_records,
)
from medseg_dfl.engine.scale_search import at_folder_scale, predict_at_object_scale
from medseg_dfl.io.atomic import is_write_error, remove_stale_temps
from medseg_dfl.io.errors import DataError
from medseg_dfl.io.geometry import ImageGeometry
from medseg_dfl.io.limits import DEFAULT_MAX_VOXELS, check_before_decoding, check_finite
from medseg_dfl.io.nnunet import nnunet_channel_files, nnunet_images_folder
from medseg_dfl.io.readers import load_image
from medseg_dfl.networks import build_network
from medseg_dfl.progress import ProgressCallback, report
from medseg_dfl.transforms import build_inference_transforms, build_inverse_postprocess

# InferenceSummary and InferenceOptions (defined in inference_folder and inference_options) stay exported
# here: callers take them from the module of predict_folder, which takes the one and returns the other.
__all__ = [
    "InferenceOptions",
    "InferenceSummary",
    "PredictionResult",
    "Predictor",
    "load_predictor",
    "predict_folder",
    "wants_tta",
]

# Errors that mean "this file cannot be processed" (unreadable, corrupt, wrong channels, out of memory);
# anything else is a bug and stops the run.
FILE_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, MemoryError)


@dataclass
class PredictionResult:
    mask: np.ndarray  # (spatial...) class indices, in load_image's spatial order of the input
    probabilities: np.ndarray | None = None  # (classes, spatial...) float32, same grid


@dataclass
class Predictor:
    """A network with its preprocessing and inverse, ready to segment whole images."""

    cfg: Config
    network: torch.nn.Module
    class_names: list[str]
    transforms: Any  # monai Compose (key "image")
    inverse: Any  # monai Compose (key "pred", Invertd without argmax)
    device: torch.device
    roi_size: list[int]
    sw_batch_size: int
    overlap: float
    dtype: torch.dtype = torch.float32
    keep_largest: tuple[int, ...] = ()  # class indices (InferenceOptions.keep_largest)
    cell_scale: dict[str, Any] | None = None  # the checkpoint's ``scale`` entry (2D smears)
    max_voxels: int = DEFAULT_MAX_VOXELS  # larger inputs are refused before decoding

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        sw_batch_size: int | None = None,
        overlap: float | None = None,
        half: bool = False,
    ) -> Predictor:
        """Rebuild config, network, inference transforms and their inverse from a checkpoint."""
        if overlap is not None:
            overlap = check_overlap(overlap)  # before the checkpoint is read
        payload = load_checkpoint(path)
        try:
            cfg = config_from_dict(payload["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: checkpoint config is not usable ({err})") from err
        resolved = resolve_device(device)
        network = build_network(cfg)
        try:
            network.load_state_dict(payload["model_state"])
        except (KeyError, RuntimeError) as err:
            raise ValueError(f"{path}: weights do not fit network {cfg.network.name} ({err})") from err
        dtype = half_dtype(resolved) if half else torch.float32  # float32 on a CPU without native bfloat16
        network = network.to(device=resolved, dtype=dtype).eval()
        transforms = build_inference_transforms(cfg, payload.get("fingerprint"))
        overlap = cfg.inference.overlap if overlap is None else overlap  # load_config checked the checkpoint's
        batch = cfg.inference.sw_batch_size if sw_batch_size is None else int(sw_batch_size)
        if batch < 1:
            raise ValueError(f"batch size must be >= 1, got {batch}")
        return cls(
            cfg=cfg,
            network=network,
            class_names=list(payload.get("class_names") or cfg.data.class_names),
            transforms=transforms,
            inverse=build_inverse_postprocess(cfg, transforms, argmax=False),
            device=resolved,
            roi_size=list(cfg.inference.roi_size or cfg.transforms.patch_size),
            sw_batch_size=batch,
            overlap=overlap,
            dtype=dtype,
            cell_scale=payload.get("scale"),
        )

    def preprocess(self, path: str | Path, keep_loaded: bool = False) -> dict[str, Any]:
        """Read ``path`` and run the inference transforms (CPU; safe in a worker thread). As
        :meth:`load`, the dict holds the source's geometry; ``keep_loaded``: also the image as loaded,
        before normalising (``LOADED_KEY``: what an overlay shows)."""
        data = self.load(path)
        if keep_loaded:
            data[LOADED_KEY] = data["image"].clone()  # the normalisation may work in place
        return post_load_steps(self.transforms)(data)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Read ``path`` without normalising it (checked: dimensions, channels); ``GEOMETRY_KEY``:
        its :class:`~medseg_dfl.io.geometry.ImageGeometry`, which the writers take."""
        data = self._read(path, load_steps(self.transforms))
        data[GEOMETRY_KEY] = ImageGeometry.from_image(data["image"], path)
        return data

    def _read(self, path: str | Path, transforms: Any) -> dict[str, Any]:
        files = nnunet_channel_files(path)  # an nnU-Net case's _0000 file: all its channel files
        for file in files:
            check_before_decoding(file, self.max_voxels)
        try:
            data = load_steps(transforms)({"image": [str(f) for f in files] if len(files) > 1 else str(path)})
            # Before normalising: one NaN would make every value NaN (and the mask background).
            check_finite(data["image"].numpy(), path)
            data = post_load_steps(transforms)(data)
        except DataError:
            raise
        except Exception:
            # MONAI's LoadImaged reports only "no suitable reader"; load_image names the real reason
            # (DataError "cannot read image"), and a 3D file given to a 2D model fails in the transforms.
            self._check_dims(path, load_image(files).ndim - 1)
            raise
        image = data["image"]
        self._check_dims(path, image.ndim - 1)
        if image.shape[0] != self.cfg.data.in_channels:
            raise DataError(path, f"image has {image.shape[0]} channel(s), the network expects {self.cfg.data.in_channels}")
        return data

    def _check_dims(self, path: str | Path, input_dims: int) -> None:
        model_dims = self.cfg.data.spatial_dims
        if input_dims != model_dims:
            raise DataError(path, f"{model_dims}D model, {input_dims}D input (this checkpoint segments "
                                  f"{'volumes' if model_dims == 3 else '2D images'})")  # fmt: skip

    def _logits(self, image: torch.Tensor) -> torch.Tensor:
        """(C, spatial) -> (classes, spatial) float32 logits on the CPU."""
        inputs = image.as_tensor() if hasattr(image, "as_tensor") else image
        with torch.no_grad():
            logits = sliding_window_inference(
                inputs[None].to(self.dtype),
                roi_size=self.roi_size,
                sw_batch_size=self.sw_batch_size,
                predictor=self.network,
                overlap=self.overlap,
                mode=self.cfg.inference.blend_mode,
                sw_device=self.device,
                device="cpu",
            )
        return logits[0]

    def predict_probabilities(self, data: dict[str, Any]) -> np.ndarray:
        """(classes, spatial...) float32 softmax probabilities of a dict from :meth:`preprocess`, on
        the loaded image's grid (no label map: the rescaled path resamples them first)."""
        probs = softmax_(self._logits(data["image"]).float())
        inverted = self.inverse({"image": data["image"], "pred": probs})["pred"]
        del probs
        return np.asarray(inverted.as_tensor() if hasattr(inverted, "as_tensor") else inverted, dtype=np.float32)

    def predict_preprocessed(self, data: dict[str, Any], probabilities: bool = False) -> PredictionResult:
        """Segment a dict from :meth:`preprocess`; the result is on the loaded image's grid."""
        return self.result_from_probabilities(self.predict_probabilities(data), probabilities)

    def result_from_probabilities(self, probs: np.ndarray, probabilities: bool = False) -> PredictionResult:
        """Mask (:func:`~medseg_dfl.engine.postprocess.labels_from_probabilities`) of (classes, spatial...)
        probabilities (background filled in place)."""
        mask = labels_from_probabilities(probs, len(self.class_names), self.keep_largest)
        return PredictionResult(mask=mask, probabilities=probs if probabilities else None)

    def predict_file(self, path: str | Path, probabilities: bool = False) -> PredictionResult:
        """Mask (and optionally probabilities) of one image, in ``load_image``'s spatial order."""
        return self.predict_preprocessed(self.preprocess(path), probabilities=probabilities)


def wants_tta(tta: bool | None, predictor: Predictor) -> bool:
    """``InferenceOptions.tta`` resolved for this model: as given, or (None) on for a single-cell model."""
    if tta is not None:
        return tta
    return mirrors_by_default(
        recorded_model_scale(predictor.cell_scale, predictor.class_names, predictor.cfg.data.spatial_dims)
    )


def load_predictor(checkpoints: Sequence[str | Path], options: InferenceOptions) -> Predictor:
    """One checkpoint's :class:`Predictor`; with several (their probabilities averaged) or with
    ``options.tta`` (mirroring), its network is an ``AveragedProbabilities`` of them all."""
    predictors = [
        Predictor.from_checkpoint(p, options.device, sw_batch_size=options.batch_size, overlap=options.overlap,
                                  half=options.half)
        for p in checkpoints
    ]  # fmt: skip
    first = dataclasses.replace(predictors[0], max_voxels=options.max_voxels)
    keep = largest_component_classes(options.keep_largest, first.class_names)
    # Mirror only the axes training mirrored (tta_flips): a model that never saw an axis flipped gets it wrong.
    flips = tta_flips(first.cfg) if wants_tta(options.tta, first) else [()]
    if len(predictors) == 1 and flips == [()]:  # nothing to average: the network's own logits
        return dataclasses.replace(first, keep_largest=keep)
    check_same_preprocessing([p.cfg for p in predictors], checkpoints)
    return dataclasses.replace(first, network=AveragedProbabilities([p.network for p in predictors], flips),
                               keep_largest=keep)


def predict_folder(
    checkpoint: str | Path | Sequence[str | Path],
    input: str | Path,
    output_dir: str | Path,
    options: InferenceOptions | None = None,
    progress: ProgressCallback | None = None,
) -> InferenceSummary:
    """Segment a file or every image in a folder into ``output_dir`` (see module docstring).
    ``progress(done, total, file name)`` after each of this rank's files.

    ``checkpoint``: a file, a run folder, a folder of fold runs, or a list of them (an ensemble).
    """
    options = options or InferenceOptions()
    input_path, output_dir = nnunet_images_folder(input), Path(output_dir)  # DatasetXXX_Name -> imagesTs/
    # Resolved first, also when every output exists: a wrong path is never "done".
    checkpoints = resolve_checkpoints([checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint))
    rank, world_size = torchrun_rank()
    summary = InferenceSummary(rank=rank, world_size=world_size)
    plans = pending_plans(input_path, output_dir, summary, recursive=options.recursive, suffix=options.suffix,
                          probabilities=options.probabilities, overlay=options.overlay,
                          overwrite=options.overwrite)  # fmt: skip
    if not plans:
        return summary
    created = not output_dir.exists()
    check_writable_folder(output_dir)  # before any work: a folder we cannot write is found now
    remove_stale_temps(output_dir, recursive=True)  # left by a killed earlier run (not by live ones)
    try:
        predictor = load_predictor(checkpoints, options)
        read, summary.model_scale = inference_reader(predictor, options.rescale, options.cell_diameter,
                                                     options.pixel_size, keep_loaded=options.overlay,
                                                     single_object=options.single_object)  # fmt: skip
    except (ValueError, OSError):
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()  # a bad checkpoint or option leaves no empty output folder behind
        raise
    if summary.model_scale is not None and summary.model_scale.kind == "object" and options.cell_diameter is None \
            and not options.scale_per_image:  # fmt: skip
        read = at_folder_scale(predictor, read, find_inputs(input_path, options.recursive), FILE_ERRORS, progress)
    report(progress, 0, len(plans), "")
    for done, (plan, loading) in enumerate(prefetch(read, plans), start=1):
        _predict_claimed(predictor, plan, loading, options, summary)
        report(progress, done, len(plans), plan.source.name)
    if summary.model_scale is not None and summary.scales:
        write_scale_records(output_dir, input_path, summary.model_scale, summary.scales)
    return summary


def _predict_claimed(predictor: Predictor, plan: OutputPlan, loading: Future, options: InferenceOptions,
                     summary: InferenceSummary) -> None:  # fmt: skip
    """Segment one input unless another run has claimed it (or finished it meanwhile); a full disk
    or a folder without write permission stops the run (``OSError`` naming the path and reason)."""
    with claim_output(plan.mask) as ours:
        if not ours:
            summary.claimed_elsewhere.append(plan.source)
            return
        if not plan.pending(options.overwrite):  # finished by another run since we looked
            summary.skipped_existing.append(plan.source)
            return
        try:
            result, geometry, image, scale = _segment(predictor, loading.result(), plan.probabilities is not None)
            write_outputs(plan, result.mask, result.probabilities, predictor.class_names, geometry, image=image,
                          overwrite=options.overwrite)  # fmt: skip
            summary.written.append(plan.source)
            if scale is not None and summary.model_scale is not None:
                summary.scales[plan.source] = scale.record(summary.model_scale.cell_diameter_px)
        except FILE_ERRORS as err:
            write_error = is_write_error(err)
            if write_error is not None:
                raise write_error from None
            summary.failed.append((plan.source, failure_reason(err)))


def _segment(predictor: Predictor, loaded: Any, keep: bool) -> tuple[PredictionResult, Any, Any, CellScale | None]:
    """(result, geometry, image as loaded, the scale it was seen at) of one input from the reader:
    resampled to the model's red-cell scale, searched for a single-cell model's scale, or as it is."""
    if isinstance(loaded, ScaledInput):  # probabilities back at the input's size, (C, H, W)
        probs = predict_at_model_scale(predictor, loaded)[0].numpy()
        return predictor.result_from_probabilities(probs, keep), loaded.geometry, loaded.loaded, loaded.scale
    if isinstance(loaded, ObjectInput):
        found = predict_at_object_scale(predictor, loaded.image, loaded.target, loaded.object_diameter,
                                        source=loaded.diameter_source)  # fmt: skip
        result = predictor.result_from_probabilities(found.probabilities.numpy(), keep)
        if loaded.core_class is not None:  # the one object training crops hold, without what touches it
            result.mask = keep_core_object(result.mask, loaded.core_class)
        return result, loaded.geometry, loaded.loaded, found.scale
    result = predictor.predict_preprocessed(loaded, probabilities=keep)
    return result, loaded[GEOMETRY_KEY], loaded.get(LOADED_KEY), None
