"""MONAI dictionary transform pipelines built from the config: the one place that decides them.

Every pipeline is ``deterministic prefix + random suffix`` so that MONAI's ``CacheDataset`` /
``PersistentDataset`` cache the expensive, deterministic part (they cache up to the first
``Randomizable`` transform):

- prefix (image [+ label]): load + channel-first (``medseg_dfl.io.readers.load_transforms``);
  3D only: ``Orientationd("RAS")``, ``CropForegroundd`` (voxels above the image minimum, i.e.
  scanner padding / empty background is cut), ``Spacingd`` (``cfg.transforms.target_spacing``, else
  the fingerprint's median spacing, else none); then intensity normalisation (per-image per-channel
  z-score for microscopy and MR; CT window ``cfg.transforms.window``, else the fingerprint's
  0.5/99.5 foreground percentiles, else [-1000, 1000], scaled to [0, 1]). 2D images (PNG/TIFF have
  no geometry) get no orientation/spacing/crop.
- train suffix: ``SpatialPadd`` to the patch size, ``RandCropByLabelClassesd`` (class-balanced:
  ``cfg.transforms.class_ratios``, uniform over classes when None), then the augmentations enabled
  in ``cfg.transforms.augment`` (flips, rot90, small affine, intensity/stain jitter, noise; optionally
  nnU-Net's low-resolution simulation and gamma).

Labels are resampled with ``nearest`` everywhere and leave the train/val pipelines as ``torch.long``
(B,1,spatial after collation); images are float32. The inference pipeline (key "image" only) is
invertible: :func:`build_inverse_postprocess` maps a prediction back onto the grid of the loaded
image (MONAI's spatial order; ``medseg_dfl.io.writers`` writes it with the file's geometry).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.transforms import (
    AsDiscreted,
    CastToTyped,
    ClassesToIndicesd,
    Compose,
    CropForegroundd,
    DeleteItemsd,
    EnsureTyped,
    Invertd,
    InvertibleTransform,
    NormalizeIntensityd,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandCropByLabelClassesd,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
    Transform,
)

from medseg_dfl.config import Config
from medseg_dfl.io.readers import load_transforms
from medseg_dfl.stain import with_stain_augmentation
from medseg_dfl.untracked import without_metadata

__all__ = [
    "DEFAULT_CT_WINDOW",
    "build_inference_transforms",
    "build_inverse_postprocess",
    "build_train_transforms",
    "build_val_transforms",
    "deterministic_prefix",
    "intensity_mode",
    "resolve_target_spacing",
]

IMAGE, LABEL, PRED = "image", "label", "pred"
_INDICES_POSTFIX = "_cls_indices"
DEFAULT_CT_WINDOW = (-1000.0, 1000.0)
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _above_minimum(img: torch.Tensor) -> torch.Tensor:
    """Foreground for ``CropForegroundd``: everything brighter than the image minimum (module-level
    so it pickles for DataLoader workers); a constant image keeps all of itself."""
    mask = img > img.min()
    return mask if bool(mask.any()) else torch.ones_like(mask)


def intensity_mode(cfg: Config) -> str:
    """``cfg.transforms.intensity`` with "auto" resolved: CT -> "window", others -> "zscore"."""
    mode = cfg.transforms.intensity
    if mode == "auto":
        return "window" if cfg.data.modality == "ct" else "zscore"
    return mode


# What the pipelines read from a dataset fingerprint (written by medseg_dfl.data.fingerprint): read
# here, so the transforms need nothing from the data layer above them.


def fingerprint_spacing(fingerprint: dict[str, Any] | None) -> list[float] | None:
    """The fingerprint's median spacing, or None."""
    if not fingerprint or not fingerprint.get("median_spacing"):
        return None
    return [float(s) for s in fingerprint["median_spacing"]]


def fingerprint_window(fingerprint: dict[str, Any] | None, channel: int = 0) -> tuple[float, float] | None:
    """CT window from the fingerprint: channel ``channel``'s 0.5 and 99.5 percentiles, or None."""
    if not fingerprint:
        return None
    per_channel = fingerprint.get("intensity_percentiles") or []
    if channel >= len(per_channel):
        return None
    table = {float(k): float(v) for k, v in per_channel[channel].items()}
    low, high = table.get(0.5), table.get(99.5)
    if low is None or high is None or not low < high:
        return None
    return low, high


def _ct_window(cfg: Config, fingerprint: dict | None) -> tuple[float, float]:
    if cfg.transforms.window is not None:
        if len(cfg.transforms.window) != 2 or cfg.transforms.window[0] >= cfg.transforms.window[1]:
            raise ValueError(f"transforms.window must be [low, high] with low < high, got {cfg.transforms.window}")
        return float(cfg.transforms.window[0]), float(cfg.transforms.window[1])
    return fingerprint_window(fingerprint) or DEFAULT_CT_WINDOW


def _ct_zscore(cfg: Config, fingerprint: dict | None) -> list[Transform]:
    """nnU-Net's CT scheme: clip to the window, then z-score with the dataset's foreground mean/std."""
    mean, std = cfg.transforms.intensity_mean, cfg.transforms.intensity_std
    if not mean or not std or len(mean) != len(std) or min(std) <= 0:
        raise ValueError(
            "transforms.intensity ct_zscore needs transforms.intensity_mean and intensity_std (one per channel, "
            f"std > 0; `medseg-dfl plan` writes them), got {mean} and {std}"
        )
    low, high = _ct_window(cfg, fingerprint)
    return [
        ScaleIntensityRanged(keys=IMAGE, a_min=low, a_max=high, b_min=low, b_max=high, clip=True),  # clip only
        NormalizeIntensityd(keys=IMAGE, subtrahend=mean, divisor=std, channel_wise=True),
    ]


def _intensity(cfg: Config, fingerprint: dict | None) -> list[Transform]:
    mode = intensity_mode(cfg)
    if mode in ("zscore", "zscore_nonzero"):
        return [NormalizeIntensityd(keys=IMAGE, nonzero=mode == "zscore_nonzero", channel_wise=True)]
    if mode == "percentile":
        return [ScaleIntensityRangePercentilesd(
            keys=IMAGE, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
        )]
    if mode == "rgb_0_1":
        return [ScaleIntensityRanged(keys=IMAGE, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True)]
    if mode == "ct_zscore":
        return _ct_zscore(cfg, fingerprint)
    low, high = _ct_window(cfg, fingerprint)
    return [ScaleIntensityRanged(keys=IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]


def resolve_target_spacing(cfg: Config, fingerprint: dict | None) -> list[float] | None:
    """3D resampling target: config, else the fingerprint's median spacing, else None (no resampling)."""
    if cfg.data.spatial_dims != 3:
        return None
    if cfg.transforms.target_spacing is not None:
        spacing = [float(s) for s in cfg.transforms.target_spacing]
    else:
        spacing = fingerprint_spacing(fingerprint)
    if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
        raise ValueError(f"target spacing must be 3 positive numbers, got {spacing}")
    return spacing


def _modes(keys: Sequence[str], image_mode: str) -> tuple[str, ...]:
    return tuple("nearest" if k == LABEL else image_mode for k in keys)


def deterministic_prefix(cfg: Config, fingerprint: dict | None, keys: Sequence[str]) -> list[Transform]:
    """Load, channel-first, (3D: RAS, foreground crop, spacing), intensity normalisation."""
    keys = list(keys)
    steps: list[Transform] = list(load_transforms(keys))
    if cfg.data.spatial_dims == 3:
        steps.append(Orientationd(keys=keys, axcodes="RAS", labels=_RAS_LABELS))
        steps.append(
            CropForegroundd(
                keys=keys, source_key=IMAGE, select_fn=_above_minimum, allow_smaller=True,
                start_coord_key=None, end_coord_key=None,
            )
        )
        spacing = resolve_target_spacing(cfg, fingerprint)
        if spacing is not None:
            steps.append(Spacingd(keys=keys, pixdim=spacing, mode=_modes(keys, "bilinear"), dtype=torch.float32))
    steps += _intensity(cfg, fingerprint)
    return steps


def _patch_sampling(cfg: Config) -> list[Transform]:
    keys, patch = [IMAGE, LABEL], list(cfg.transforms.patch_size)
    if cfg.transforms.num_samples < 1:
        raise ValueError(f"transforms.num_samples must be >= 1, got {cfg.transforms.num_samples}")
    ratios = cfg.transforms.class_ratios
    if ratios is not None and (min(ratios) < 0 or sum(ratios) <= 0):
        raise ValueError(f"transforms.class_ratios must be >= 0 with a positive sum, got {ratios}")
    # The class positions are found once, in the cached (deterministic) part, instead of on every
    # draw: that search was about a quarter of the per-sample transform time. The crops are the
    # same; the positions are dropped after cropping so they are neither copied nor collated.
    return [
        SpatialPadd(keys=keys, spatial_size=patch),
        ClassesToIndicesd(keys=LABEL, num_classes=cfg.data.num_classes, indices_postfix=_INDICES_POSTFIX),
        RandCropByLabelClassesd(
            keys=keys, label_key=LABEL, spatial_size=patch, ratios=ratios,
            num_classes=cfg.data.num_classes, num_samples=cfg.transforms.num_samples, warn=False,
            indices_key=LABEL + _INDICES_POSTFIX,
        ),
        DeleteItemsd(keys=LABEL + _INDICES_POSTFIX),
    ]


def _spatial_augment(cfg: Config) -> list[Transform]:
    keys, dims, aug = [IMAGE, LABEL], cfg.data.spatial_dims, cfg.transforms.augment
    patch = cfg.transforms.patch_size
    steps: list[Transform] = []
    if aug.flip:
        axes = range(dims) if aug.flip_axes is None else aug.flip_axes
        steps += [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in axes]
    # rot90 in the first plane only, and only where the patch is square there (batches must collate).
    if aug.rot90 and patch[0] == patch[1]:
        steps.append(RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(0, 1)))
    if aug.affine and aug.affine_prob > 0:
        radians = math.radians(aug.rotate_degrees)
        rotate = radians if dims == 2 else (radians,) * 3
        steps.append(
            RandAffined(
                keys=keys, prob=aug.affine_prob, rotate_range=rotate, scale_range=(aug.scale_fraction,) * dims,
                mode=("bilinear", "nearest"), padding_mode="reflection",
            )
        )
    return steps


def _intensity_augment(cfg: Config) -> list[Transform]:
    aug = cfg.transforms.augment
    steps: list[Transform] = []
    if aug.color_jitter:
        # Per-channel scale/shift of the normalised image approximates stain/colour variation.
        steps += [
            RandScaleIntensityd(keys=IMAGE, factors=0.1, prob=0.5, channel_wise=True),
            RandShiftIntensityd(keys=IMAGE, offsets=0.1, prob=0.5, channel_wise=True),
            RandAdjustContrastd(keys=IMAGE, prob=0.3, gamma=(0.7, 1.5)),
        ]
    if aug.noise:
        steps.append(RandGaussianNoised(keys=IMAGE, prob=0.15, mean=0.0, std=0.1))
    if aug.low_resolution:
        steps += _low_resolution_and_gamma(cfg)
    return steps


def _low_resolution_and_gamma(cfg: Config) -> list[Transform]:
    """nnU-Net's low-resolution simulation and gamma, on the image only (the label keeps its detail:
    the network learns to segment finely from a blurred input). Its gamma keeps the patch's mean and
    std (retain_stats), and is also applied to the inverted image (dark structures get the shift
    bright ones get). color_jitter already draws the plain gamma: it is added here only without it."""
    upsample = "trilinear" if cfg.data.spatial_dims == 3 else "bilinear"  # MONAI's default is 3D only
    steps: list[Transform] = [
        RandSimulateLowResolutiond(keys=IMAGE, prob=0.25, zoom_range=(0.5, 1.0), downsample_mode="nearest",
                                   upsample_mode=upsample),  # fmt: skip
        RandAdjustContrastd(keys=IMAGE, prob=0.1, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
    ]
    if not cfg.transforms.augment.color_jitter:
        steps.append(RandAdjustContrastd(keys=IMAGE, prob=0.3, gamma=(0.7, 1.5), retain_stats=True))
    return steps


def _label_to_long() -> Transform:
    return CastToTyped(keys=LABEL, dtype=torch.long)


def build_train_transforms(cfg: Config, fingerprint: dict | None = None) -> Compose:
    """Training pipeline: deterministic prefix, then class-balanced patches and augmentation.

    Each item becomes ``cfg.transforms.num_samples`` patch dicts (MONAI's ``list_data_collate``
    flattens them, so a batch holds ``batch_size * num_samples`` patches).
    """
    steps = deterministic_prefix(cfg, fingerprint, [IMAGE, LABEL])
    if cfg.transforms.augment.stain:  # on the raw RGB image, before its normalisation
        steps = with_stain_augmentation(steps, IMAGE, LABEL, sigma=cfg.transforms.augment.stain_sigma)
    # The per-draw steps run without metadata tracking (half their CPU time; see medseg_dfl/untracked.py).
    steps += without_metadata(_patch_sampling(cfg) + _spatial_augment(cfg) + _intensity_augment(cfg) + [_label_to_long()])
    return Compose(steps)


def build_val_transforms(cfg: Config, fingerprint: dict | None = None) -> Compose:
    """Validation pipeline: whole images (the sliding window sees them), deterministic, image+label."""
    return Compose([*deterministic_prefix(cfg, fingerprint, [IMAGE, LABEL]), _label_to_long()])


def build_inference_transforms(cfg: Config, fingerprint: dict | None = None) -> Compose:
    """Inference pipeline on key "image" only; invert it with :func:`build_inverse_postprocess`."""
    return Compose(deterministic_prefix(cfg, fingerprint, [IMAGE]))


def build_inverse_postprocess(cfg: Config, inference_transforms: Compose, *, argmax: bool = True) -> Compose:
    """Map ``d["pred"]`` (C, spatial: probabilities, or logits) back onto the loaded image's grid.

    Works on one (decollated) dict that still holds the transformed ``"image"`` (its
    ``applied_operations`` are what gets undone). Probabilities are resampled linearly, then
    (``argmax=True``) reduced to a (1, spatial) label map; regions removed by the foreground crop
    come back as zeros, i.e. background after argmax.
    """
    # A plain tensor would be skipped by Invertd (it looks for MetaTensor operations or a trace key).
    steps: list[Any] = [EnsureTyped(keys=PRED, track_meta=True)]
    if any(isinstance(t, InvertibleTransform) for t in inference_transforms.flatten().transforms):
        steps.append(
            Invertd(keys=PRED, transform=inference_transforms, orig_keys=IMAGE, nearest_interp=False, to_tensor=True)
        )
    if argmax:
        steps.append(AsDiscreted(keys=PRED, argmax=True))
    return Compose(steps)
