"""Segmentation overlays: a label map painted over its image, with a legend of class names.

2D images are shown whole; 3D volumes as three orthogonal slices (sagittal, coronal, axial) through
the foreground's centre of mass (the volume centre when the mask is empty), drawn with the voxel
spacing's aspect ratio. 2D arrays are rows first, as everywhere in memory: image (C, H, W), mask
(H, W), spacing (row, column); volumes in ``medseg_dfl.io.readers.load_image`` order: image
(C, X, Y, Z), mask (X, Y, Z). Matplotlib's object API (no pyplot), so it
is safe in threads and never opens a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from medseg_dfl.io.atomic import save_figure

__all__ = ["CLASS_COLOURS", "class_colour", "overlay_figure", "save_overlay"]

# Fixed colour table (RGB 0..255) for classes 1, 2, ...; background (0) is never painted.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)  # fmt: skip
_AXIS_NAMES = ("sagittal", "coronal", "axial")


def class_colour(label: int) -> tuple[float, float, float]:
    """RGB in 0..1 for a foreground class index (1-based; the table repeats after 15 classes)."""
    r, g, b = CLASS_COLOURS[(label - 1) % len(CLASS_COLOURS)]
    return r / 255.0, g / 255.0, b / 255.0


def _normalise(image: np.ndarray) -> np.ndarray:
    """Scale intensities to 0..1 between the 1st and 99th percentile (robust to outliers)."""
    image = image.astype(np.float32)
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def _mask_rgba(mask: np.ndarray, alpha: float) -> np.ndarray:
    rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
    for label in np.unique(mask):
        if label == 0:
            continue
        rgba[mask == label] = (*class_colour(int(label)), alpha)
    return rgba


def _display_2d(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) grey or (H, W, 3) RGB, 0..1."""
    if image.shape[0] == 3:
        return _normalise(np.moveaxis(image, 0, -1))
    return _normalise(image[0])


def _centre_slices(mask: np.ndarray) -> list[int]:
    """Slice indices through the foreground's centre of mass (the volume centre when there is none)."""
    coords = np.nonzero(mask)
    if coords[0].size == 0:
        return [n // 2 for n in mask.shape]
    return [int(round(float(c.mean()))) for c in coords]


def _panels_3d(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]):
    """Yield (title, image plane, mask plane, aspect) for the three orthogonal slices."""
    volume = _normalise(image[0])
    for axis, index in enumerate(_centre_slices(mask)):
        rows_cols = [a for a in range(3) if a != axis]  # plane axes in order (horizontal, vertical)
        plane = np.take(volume, index, axis=axis).T  # (vertical, horizontal)
        mask_plane = np.take(mask, index, axis=axis).T
        aspect = float(spacing[rows_cols[1]]) / float(spacing[rows_cols[0]])
        yield f"{_AXIS_NAMES[axis]} {index}", plane, mask_plane, aspect


def overlay_figure(
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    *,
    spacing: Sequence[float] | None = None,
    alpha: float = 0.45,
    title: str | None = None,
):  # -> matplotlib.figure.Figure
    """A figure of ``mask`` over ``image`` with a legend (colour + name of every foreground class)."""
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != mask.ndim + 1 or image.shape[1:] != mask.shape:
        raise ValueError(f"image (C, spatial) {image.shape} and mask (spatial) {mask.shape} do not match")
    if mask.ndim not in (2, 3):
        raise ValueError(f"overlays need a 2D or 3D mask, got shape {mask.shape}")
    spacing = list(spacing) if spacing is not None else [1.0] * mask.ndim
    if mask.ndim == 2:
        panels = [("", _display_2d(image), mask, float(spacing[0]) / float(spacing[1]))]
        fig = Figure(figsize=(7, 7.6))
    else:
        panels = list(_panels_3d(image, mask, spacing))
        fig = Figure(figsize=(13, 5.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, plane, mask_plane, aspect) in zip(axes, panels, strict=True):
        origin = "upper" if mask.ndim == 2 else "lower"  # 2D: image rows top-down; 3D: superior up
        ax.imshow(plane, cmap="gray", vmin=0.0, vmax=1.0, origin=origin, aspect=aspect, interpolation="nearest")
        ax.imshow(_mask_rgba(mask_plane, alpha), origin=origin, aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    handles = [
        Patch(facecolor=class_colour(i), edgecolor="black", label=name) for i, name in enumerate(class_names) if i > 0
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6) or 1, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86 if title else 0.93, bottom=0.1, wspace=0.05)
    return fig


def save_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    out_path: str | Path,
    *,
    spacing: Sequence[float] | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write :func:`overlay_figure` as a PNG, atomically (temporary name, then rename)."""
    fig = overlay_figure(image, mask, class_names, spacing=spacing, title=title)
    return save_figure(fig, out_path, overwrite=overwrite, format="png", dpi=100)
