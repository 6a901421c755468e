"""The data-driven decisions of a plan, each a pure function of the survey returning (value, why).

- classes: ``dataset.json`` ``labels``, else ``background, class_1..class_K`` from the values seen;
  instance masks and values that are not class indices are refused with one line saying what to do;
- modality and intensity normalisation, as nnU-Net: CT -> clip to the foreground 0.5/99.5
  percentiles, then z-score with the data set's foreground mean/std; MR and other non-CT -> per-case
  z-score (over non-zero voxels when the background is zero); 8-bit colour microscopy -> /255
  (:data:`RGB_NORMALISATION`, chosen by measurement, see its comment);
- target spacing: the median, with nnU-Net's rule for a strongly anisotropic low-resolution axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg_dfl.planning.survey import DatasetSurvey

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "DEEP_SUPERVISION_EPOCHS",
    "RGB_NORMALISATION",
    "ClassDecision",
    "NormDecision",
    "class_names_hint",
    "decide_affine_strength",
    "decide_deep_supervision",
    "decide_classes",
    "decide_flip_axes",
    "decide_modality",
    "decide_normalisation",
    "decide_target_spacing",
]

# Volumes trained for this many epochs or more get nnU-Net's rotation and scaling: with the light
# strength the hippocampus's validation loss was lowest near epoch 45 and rose after (30-minute plan,
# 114 epochs); with nnU-Net's it kept falling. At 20 epochs (5-minute plan) nnU-Net's cost 0.007
# (docs/results/nnunet_ingredients.md).
STRONG_AFFINE_EPOCHS = 50
# Deep supervision from as many epochs on: the same two measurements as the affine strength (it cost 0.002
# at 20 epochs and gained 0.003 at 114 on the hippocampus); nothing was measured in between.
DEEP_SUPERVISION_EPOCHS = 50
NNUNET_AFFINE = {"affine_prob": 0.36, "rotate_degrees": 30.0, "scale_fraction": 0.3}  # p 0.2 each -> 0.36 either
ANISOTROPY_THRESHOLD = 3.0  # nnU-Net: a spacing 3x coarser than the others is "anisotropic"
# Background counts as zero when at least this share of voxels is exactly 0 (skull-stripped MR,
# padded scans): z-scoring over the non-zero voxels then keeps the background at 0, as nnU-Net does.
ZERO_BACKGROUND_SHARE = 0.2
# 8-bit colour microscopy: per-channel /255 ("rgb_0_1", nnU-Net's RGB scheme) or per-image z-score
# ("zscore"). Measured on WBC (README, "Planning a config from the data"): /255 was ahead at every
# validation from epoch 2 (one seed each, so a small, not a proven, difference).
RGB_NORMALISATION = "rgb_0_1"
RGB_NOTE = (
    "/255 per channel (nnU-Net's RGB scheme): on WBC, same plan, 12 epochs, it led per-image z-score at every "
    "validation from epoch 2 (final mean Dice 0.956 vs 0.950, one seed each)"
)
# An axis is "ordered" (no random flips along it) when two classes' centroids keep the same order
# in at least this share of the cases that hold both, at least this share of the foreground's extent
# apart. Hippocampus (MSD Task04, 195 cases): anterior vs posterior agree in 100 % of cases along
# A-P (offset 46 % of the extent) and S-I (28 %), 92 % along L-R (10 %): flips along L-R only.
ORDERED_AXIS_AGREEMENT = 0.95
ORDERED_AXIS_SEPARATION = 0.15
ORDERED_AXIS_MIN_CASES = 5
_CT_NAMES = {"ct", "cect", "nect"}
_MR_NAMES = {"mr", "mri", "t1", "t1w", "t1gd", "t2", "t2w", "flair", "adc", "dwi", "pd", "swi", "bold"}


@dataclass(frozen=True)
class ClassDecision:
    names: list[str]
    why: str
    warnings: list[str]


@dataclass(frozen=True)
class NormDecision:
    mode: str
    window: list[float] | None
    mean: list[float] | None
    std: list[float] | None
    why: str


def _instance_message(survey: DatasetSurvey) -> str:
    example = next(c for c in survey.cases if c.instance_like)
    n_values = len([v for v in example.label_counts if v > 0])
    return (
        f"{example.case_id}: the labels look like instance masks ({n_values} label values, each one connected "
        f"blob, in {sum(c.instance_like for c in survey.cases)} of {len(survey.cases)} cases); convert them to "
        "class maps first (one object class: label > 0 -> 1; several: map each instance to its class) and add a "
        "dataset.json 'labels' with the class names"
    )


def _not_indices_message(values: list[int]) -> str:
    remap = ", ".join(f"{v} -> {i}" for i, v in enumerate(values))
    return (
        f"label values {values} are not class indices 0..{len(values) - 1}; remap them ({remap}) and, "
        "if you like, name the classes in a dataset.json 'labels'"
    )


def class_names_hint(names: list[str], data_dir: str | Path) -> str:
    """How to name classes the plan could only number (no dataset.json ``labels``)."""
    k = len(names) - 1
    placeholders = ",".join(["background", *(f"NAME{i}" for i in range(1, k + 1))])
    labels = ", ".join(f'"{i}": "{n}"' for i, n in enumerate(["background", *(f"NAME{i}" for i in range(1, k + 1))]))
    return (f"classes are only numbered ({', '.join(names[1:])}: no dataset.json 'labels'); name them with "
            f"--set data.class_names=[{placeholders}] (plan, train), or put a dataset.json in {data_dir} with "
            f"\"labels\": {{{labels}}}")


def decide_classes(survey: DatasetSurvey) -> ClassDecision:
    """Class names (label value i is names[i]); ``ValueError`` for instance masks or non-index values."""
    values = survey.values()
    instance_cases = sum(c.instance_like for c in survey.cases)
    if instance_cases and instance_cases * 2 >= len(survey.cases):
        raise ValueError(_instance_message(survey))
    highest = values[-1] if values else 0
    if survey.json_labels is not None:
        names = list(survey.json_labels)
        if highest >= len(names):
            raise ValueError(
                f"{survey.root / 'dataset.json'}: 'labels' names classes 0..{len(names) - 1}, but the labels hold "
                f"values up to {highest}"
            )
        why = f"class names from dataset.json 'labels' ({len(names)} classes)"
    else:
        if highest + 1 > 2 * len(values) and len(values) <= 16:
            raise ValueError(f"{survey.root}: " + _not_indices_message(values))
        names = ["background"] + [f"class_{i}" for i in range(1, highest + 1)]
        why = f"no dataset.json 'labels': label values 0..{highest} seen -> background, class_1..class_{highest}"
    if len(names) < 2:
        raise ValueError(f"{survey.root}: every label map is empty (only background); nothing to learn")
    counts = survey.counts(len(names))
    warnings = [
        f"class '{names[i]}' (label {i}) appears in no case: the network cannot learn it (check the labels, or "
        "drop it from the class list)"
        for i in range(len(names)) if counts[i] == 0
    ]
    return ClassDecision(names, why, warnings)


def _modality_of(name: str) -> str:
    key = name.strip().lower().replace("-", "").replace(" ", "")
    if key in _CT_NAMES:
        return "ct"
    if key in _MR_NAMES or key.startswith("t1") or key.startswith("t2"):
        return "mr"
    return "microscopy" if key in {"microscopy", "rgb", "brightfield", "histology"} else "other"


def decide_modality(survey: DatasetSurvey) -> tuple[str, str]:
    """``data.modality`` (ct | mr | microscopy) and why."""
    first = survey.cases[0]
    if survey.json_modalities:
        kinds = [_modality_of(n) for n in survey.json_modalities]
        names = ", ".join(survey.json_modalities)
        if len(survey.json_modalities) != first.channels and not (first.channels == 3 and kinds == ["microscopy"]):
            raise ValueError(
                f"{survey.root / 'dataset.json'}: 'modality' names {len(kinds)} channel(s) ({names}) but the images "
                f"have {first.channels}"
            )
        if all(k == "ct" for k in kinds):
            return "ct", f"dataset.json modality {names}"
        if kinds and all(k == "microscopy" for k in kinds):
            return "microscopy", f"dataset.json modality {names}"
        return "mr", f"dataset.json modality {names}: non-CT, normalised like MR"
    if first.spatial_dims == 2:
        return "microscopy", f"2D images with {first.channels} channel(s), no dataset.json modality"
    lowest = float(np.median([c.minimum for c in survey.cases]))
    if lowest <= -500:
        return "ct", f"3D, median image minimum {lowest:.0f} (air in Hounsfield units)"
    return "mr", f"3D, median image minimum {lowest:.3g} (not Hounsfield units): non-CT"


def _pooled(survey: DatasetSurvey) -> tuple[list[float], list[float]]:
    """Foreground mean/std over all cases pooled (exact, from the per-case moments)."""
    n = np.array([c.fg_count for c in survey.cases], dtype=np.float64)
    means = np.array([c.fg_mean for c in survey.cases])
    stds = np.array([c.fg_std for c in survey.cases])
    mean = (n[:, None] * means).sum(0) / n.sum()
    second = (n[:, None] * (stds**2 + means**2)).sum(0) / n.sum()
    return [float(m) for m in mean], [float(s) for s in np.sqrt(np.maximum(second - mean**2, 1e-12))]


def decide_normalisation(survey: DatasetSurvey, modality: str) -> NormDecision:
    cases = survey.cases
    if modality == "ct":
        low = float(np.median([c.fg_p005[0] for c in cases]))
        high = float(np.median([c.fg_p995[0] for c in cases]))
        mean, std = _pooled(survey)
        why = (
            f"CT (nnU-Net): clip to the foreground 0.5/99.5 percentiles [{low:.4g}, {high:.4g}] (median over cases), "
            f"then z-score with the data set's foreground mean {mean[0]:.4g} and std {std[0]:.4g}"
        )
        return NormDecision("ct_zscore", [round(low, 4), round(high, 4)], _round(mean), _round(std), why)
    if modality == "microscopy" and all(c.is_8bit for c in cases) and cases[0].channels == 3:
        return NormDecision(RGB_NORMALISATION, None, None, None, f"8-bit RGB microscopy: {RGB_NOTE}")
    zero_share = float(np.median([c.zero_share for c in cases]))
    if zero_share >= ZERO_BACKGROUND_SHARE:
        why = (
            f"{modality}: per-case z-score over the non-zero voxels ({zero_share:.0%} of voxels are 0 in the median "
            "case: zero background stays 0, as nnU-Net does)"
        )
        return NormDecision("zscore_nonzero", None, None, None, why)
    spread = max(c.fg_mean[0] for c in cases) / max(min(abs(c.fg_mean[0]) for c in cases), 1e-6)
    why = (
        f"{modality}: per-case z-score per channel (intensities in arbitrary units: foreground means differ up to "
        f"{spread:.3g}x between cases; background is not zero, only {zero_share:.1%} zero voxels)"
    )
    return NormDecision("zscore", None, None, None, why)


def _round(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def decide_target_spacing(survey: DatasetSurvey) -> tuple[list[float] | None, str]:
    """3D: the median spacing; for an axis >= 3x coarser than the others (and >= 3x fewer voxels),
    nnU-Net's rule: that axis takes the 10th percentile of its spacings (at least the others' max)."""
    if survey.cases[0].spatial_dims != 3:
        return None, "2D images: no resampling"
    spacings = np.array([c.spacing for c in survey.cases], dtype=np.float64)
    shapes = np.array([c.shape for c in survey.cases], dtype=np.float64)
    target = np.median(spacings, axis=0)
    sizes = np.median(shapes, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(3) if i != worst]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[i] for i in others)
    aniso_voxels = sizes[worst] * ANISOTROPY_THRESHOLD < min(sizes[i] for i in others)
    text = "x".join(f"{s:.3g}" for s in target)
    if aniso_spacing and aniso_voxels:
        axis_spacing = max(float(np.percentile(spacings[:, worst], 10)), max(target[i] for i in others) + 1e-5)
        target[worst] = axis_spacing
        why = (
            f"median spacing {text} mm is anisotropic (axis {worst} >= {ANISOTROPY_THRESHOLD:g}x coarser): that axis "
            f"takes the 10th percentile of its spacings, {axis_spacing:.3g} mm (nnU-Net)"
        )
    else:
        same = len(set(map(tuple, spacings.round(4)))) == 1
        why = f"median spacing {text} mm" + (" (every case has it: no resampling needed)" if same else "")
    return [float(round(s, 5)) for s in target], why


def _ordered_axis(survey: DatasetSurvey, axis: int) -> tuple[int, int, float] | None:
    """The first pair of foreground classes whose centroids sit in a fixed order along ``axis``
    (the same sign in ORDERED_AXIS_AGREEMENT of the cases holding both, apart by at least
    ORDERED_AXIS_SEPARATION of the foreground's median extent there), with that median offset (mm)."""
    extents = [c.fg_extent[axis] for c in survey.cases if len(c.fg_extent) > axis]
    if not extents:
        return None
    scale = float(np.median(extents))
    values = sorted({v for c in survey.cases for v in c.class_centroids})
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            offsets = np.array([c.class_centroids[a][axis] - c.class_centroids[b][axis]
                                for c in survey.cases if a in c.class_centroids and b in c.class_centroids])
            if len(offsets) < ORDERED_AXIS_MIN_CASES:
                continue
            agreement = max((offsets > 0).mean(), (offsets < 0).mean())
            median = float(np.median(offsets))
            if agreement >= ORDERED_AXIS_AGREEMENT and abs(median) >= ORDERED_AXIS_SEPARATION * scale:
                return a, b, median
    return None


def _name(names: list[str], value: int) -> str:
    return names[value] if value < len(names) else f"class {value}"


def decide_flip_axes(survey: DatasetSurvey, names: list[str]) -> tuple[list[int] | None, str]:
    """Random flips mirror every axis except those along which two classes always come in the same
    order (the hippocampus head is anterior to its body in every case): mirroring such an axis
    turns one class into the other's place, so the network would have to unlearn where each is."""
    dims = survey.cases[0].spatial_dims
    ordered = {axis: found for axis in range(dims) if (found := _ordered_axis(survey, axis)) is not None}
    if not ordered:
        return None, "every axis: no two classes come in a fixed order along any axis"
    keep = [axis for axis in range(dims) if axis not in ordered]
    reasons = "; ".join(
        f"axis {axis}: the {_name(names, a)} centroid sits {off:+.3g} mm from the {_name(names, b)} one "
        f"in >= {ORDERED_AXIS_AGREEMENT:.0%} of cases"
        for axis, (a, b, off) in ordered.items()
    )
    return keep, f"axes {keep or 'none'} only ({reasons}; mirroring there swaps the classes' places)"


def decide_affine_strength(spatial_dims: int, epochs: int) -> tuple[dict[str, float], str]:
    """The affine step's strength (``transforms.augment``) for a run of ``epochs``: nnU-Net's for
    long 3D runs, where the light default overfits; the light default otherwise (``{}``)."""
    if spatial_dims == 3 and epochs >= STRONG_AFFINE_EPOCHS:
        return dict(NNUNET_AFFINE), (
            f"{epochs} epochs >= {STRONG_AFFINE_EPOCHS}: nnU-Net's rotation (30 degrees) and scaling (0.7-1.3), "
            "p 0.36; hippocampus, 30-minute plan: validation 0.883 -> 0.888 at the last epoch, 0.887 -> 0.888 at the best")
    why = "light (p 0.2, 15 degrees, +-10 %): " + (
        f"{epochs} epochs < {STRONG_AFFINE_EPOCHS}: nnU-Net's strength cost 0.007 on the hippocampus at 20 epochs" if spatial_dims == 3
        else "2D images, where the stronger one was not measured (RGB microscopy's stain augmentation also zooms 0.6-1.4)")
    return {}, why


def decide_deep_supervision(spatial_dims: int, epochs: int, network: str) -> tuple[bool, str]:
    """nnU-Net's deep supervision (``network.kwargs.deep_supervision``) for long 3D DynUNet runs."""
    dynunet = network.lower() == "dynunet"
    if dynunet and spatial_dims == 3 and epochs >= DEEP_SUPERVISION_EPOCHS:
        return True, (
            f"on: {epochs} epochs >= {DEEP_SUPERVISION_EPOCHS} (nnU-Net's loss on the two highest decoder outputs, "
            "weights 2/3 and 1/3; ~5 % slower steps, not taken off the epochs); hippocampus, 30-minute plan "
            "with nnU-Net's rotation and scaling: validation 0.888 -> 0.891 at the best and the last epoch; at 20 epochs it cost 0.002")
    return False, "off (nnU-Net's; measured at equal budget in benchmarks/equal_budget.py): " + (
        f"{network} has no deep supervision heads" if not dynunet
        else f"{epochs} epochs < {DEEP_SUPERVISION_EPOCHS}: it cost 0.002 on the hippocampus at 20 epochs" if spatial_dims == 3
        else "2D images, where it was not measured")
