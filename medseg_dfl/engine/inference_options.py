"""What ``infer`` can be asked to do: :class:`InferenceOptions`, taken by
:func:`medseg_dfl.engine.inference.predict_folder` and ``count`` (and re-exported by
:mod:`medseg_dfl.engine.inference`, where callers take it from)."""

from __future__ import annotations

from dataclasses import dataclass

from medseg_dfl.io.limits import DEFAULT_MAX_VOXELS

__all__ = ["InferenceOptions"]


@dataclass
class InferenceOptions:
    recursive: bool = False
    overwrite: bool = False
    overlay: bool = False
    probabilities: bool = False
    device: str = "auto"
    # Windows per network call; None = the checkpoint's inference.sw_batch_size.
    batch_size: int | None = None
    # Fraction of window overlap; None = the checkpoint's inference.overlap.
    overlap: float | None = None
    # Network and stitching in float16 (CUDA) / bfloat16 (CPU).
    half: bool = False
    # Appended to the mask's stem (e.g. "_seg"); "" keeps the input's name.
    suffix: str = ""
    # Test-time augmentation: mean softmax over the flips of the axes training mirrored
    # (transforms.augment.flip_axes; none when training did not flip), inside the sliding window.
    # None: on for single-cell (white-cell crop) models, where it held another lab's cytoplasm
    # (segmentation_WBC Dataset 2, docs/results/wbc_cross_lab.md), off for the rest (no gain on the
    # hippocampus, 8x the cost in 3D).
    tta: bool | None = None
    # Class names whose mask keeps only its largest connected component (nnU-Net's post-processing
    # for single-object structures); ("all",) = every foreground class. Never for cells.
    keep_largest: tuple[str, ...] = ()
    # 2D smear models (a red-cell class and a recorded training scale): each input is resampled so
    # its red cells are as large as in training, and the result back (medseg_dfl.engine.rescale);
    # 2D single-cell models: so the cell they segment is (searched, engine.scale_search).
    # False: every input runs at its own pixel size. 3D models are never rescaled.
    rescale: bool = True
    cell_diameter: float | None = None  # px in the inputs (red cell, or the single-cell model's cell); None: found
    # Single-cell models trained on crops of one object each (white cells): keep that object, split
    # from what touches it (engine.postprocess.keep_core_object); the mask only, saved probabilities
    # are the network's. False: every segmented object.
    single_object: bool = True
    # Single-cell models: search each input's scale on its own. False (default): every input is
    # searched, then all run at the median diameter (one lab's crops share a magnification;
    # engine.scale_search). Ignored with cell_diameter.
    scale_per_image: bool = False
    pixel_size: float | None = None  # um per pixel of the inputs
    # Inputs declaring more voxels x channels are refused before decoding (medseg_dfl.io.limits).
    max_voxels: int = DEFAULT_MAX_VOXELS
