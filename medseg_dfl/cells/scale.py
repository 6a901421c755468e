"""How large the cells of a 2D smear are, in pixels: from the file's pixel size or from the image.

A smear's magnification is best described by the typical red-cell diameter in pixels (like
Cellpose's ``--diameter``): a normal red cell is about :data:`RBC_DIAMETER_UM` microns across, so
a known pixel size (TIFF resolution tags, OME-XML ``PhysicalSizeX``, PNG/JPEG dpi, or the user's
``--pixel-size``) gives it directly. Otherwise it is estimated from the image: the cells are
separated from the bright background by Li's threshold on optical density, their pale centres
and small holes are filled, and the distance to the background at each cell's centre (the
regional maxima of the distance transform, scikit-image ``h_maxima``) is a cell's radius; the
median over cells is robust to a few leukocytes, platelets and cells cut by the border.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage
from skimage import filters, measure, morphology

from medseg_dfl.cells.object_scale import training_object_scale
from medseg_dfl.choices import check_scale_flags
from medseg_dfl.data.folds import Split, training_split
from medseg_dfl.io.atomic import write_json
from medseg_dfl.io.readers import load_image

__all__ = [
    "ESTIMATED",
    "RBC_DIAMETER_UM",
    "SCALE_FILE",
    "UNUSUAL_SCALE",
    "CellScale",
    "cell_foreground",
    "diameter_from_mask",
    "estimate_cell_diameter",
    "fill_small_holes",
    "pixel_size_from_file",
    "image_to_rgb",
    "resolve_scale",
    "scale_from_config",
    "training_scale",
    "unusual_estimates",
    "write_scale_file",
]

RBC_DIAMETER_UM = 7.5  # a normal red cell, microns
ESTIMATED = "estimated from the image"  # CellScale.source of an estimate
UNUSUAL_SCALE = 0.2  # an estimate this far (relative) from the folder's median is worth a look
# A pixel size outside this range is a default (72 dpi), not a microscope's: ignored.
_PLAUSIBLE_UM_PER_PX = (0.01, 5.0)
# The distance-transform maxima of touching discs sit slightly above their radius (neighbours fill
# the gaps); measured on synthetic smears at 20-110 px (tests/cells/test_scale.py).
_PEAK_TO_RADIUS = 0.96
SCALE_FILE = "scale.json"  # in the output folder of ``count`` and ``infer``: the scale each image was seen at
_UNIT_UM = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "inch": 25400.0}


@dataclass(frozen=True)
class CellScale:
    """The scale of one image: typical red-cell diameter (px) and, when known, microns per pixel."""
    cell_diameter_px: float
    pixel_size_um: float | None
    source: str  # "--cell-diameter", "--pixel-size", "file metadata", "estimated from the image", ...

    def describe(self) -> str:
        size = f", {self.pixel_size_um:.4g} um/px" if self.pixel_size_um else ""
        return f"red-cell diameter {self.cell_diameter_px:.1f} px{size} ({self.source})"

    def record(self, model_diameter: float) -> dict[str, Any]:
        """One image's entry in :data:`SCALE_FILE`; ``factor``: how much it was resampled (< 1: shrunk)."""
        return {
            "cell_diameter_px": round(self.cell_diameter_px, 3),
            "pixel_size_um": self.pixel_size_um,
            "source": self.source,
            "factor": round(model_diameter / self.cell_diameter_px, 5),
        }


def _plausible(um_per_px: float | None) -> float | None:
    if um_per_px is None or not np.isfinite(um_per_px):
        return None
    low, high = _PLAUSIBLE_UM_PER_PX
    return float(um_per_px) if low <= um_per_px <= high else None


def _tiff_pixel_size(path: Path) -> float | None:

    with tifffile.TiffFile(path) as tif:
        if tif.ome_metadata:

            for element in ET.fromstring(tif.ome_metadata).iter():
                if element.tag.endswith("Pixels") and "PhysicalSizeX" in element.attrib:
                    unit = element.attrib.get("PhysicalSizeXUnit", "µm")
                    return float(element.attrib["PhysicalSizeX"]) * _UNIT_UM.get(unit, 1.0)
        tags = tif.pages[0].tags
        if "XResolution" not in tags:
            return None
        num, den = tags["XResolution"].value
        unit_tag = tags.get("ResolutionUnit")
        unit = int(unit_tag.value) if unit_tag is not None else 2
        if unit == 1 or num == 0:  # no absolute unit
            return None
        return {2: 25400.0, 3: 10000.0}.get(unit, 25400.0) * den / num


def pixel_size_from_file(path: str | Path) -> float | None:
    """Microns per pixel from the file's metadata (TIFF/OME-TIFF tags, PNG/JPEG dpi), else None.

    Values a microscope cannot have (e.g. the 72 dpi many programs write by default) are ignored.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _plausible(_tiff_pixel_size(path))

        with Image.open(path) as image:
            dpi = image.info.get("dpi")
        return _plausible(25400.0 / float(dpi[0])) if dpi and float(dpi[0]) > 0 else None
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):  # metadata is optional
        return None


def cell_foreground(image: np.ndarray) -> np.ndarray:
    """Cells (anything stained) vs the bright background of an (H, W, 3) RGB image: a bool mask."""
    rgb = np.asarray(image, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    rgb = rgb[..., :3]
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    # Optical density against the brightest part of the slide (its background): stain-independent.
    background = np.percentile(rgb.reshape(-1, 3), 99, axis=0) + 1.0
    density = -np.log(np.clip(rgb + 1.0, 1.0, None) / background).sum(axis=-1)
    density = ndimage.uniform_filter(density, 3)
    # Li's minimum-cross-entropy threshold: Otsu's splits dark nuclei from everything else when a
    # large leukocyte is in view; Li's keeps the pale red cells with the stained objects.
    return density > filters.threshold_li(density)


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """``mask`` with its holes of at most ``max_area`` pixels filled (pale cell centres)."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    labels, count = ndimage.label(holes)
    if count == 0:
        return mask
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    small = areas <= max_area
    small[0] = False
    return mask | small[labels]


def _peak_radii(mask: np.ndarray) -> np.ndarray:
    """Distance to the background at the regional maxima of the distance transform (one per maximum)."""
    distance = ndimage.distance_transform_edt(mask)
    if distance.max() < 1.5:
        return np.empty(0)
    # h_maxima is several times faster on integers: half-pixel steps are precise enough.
    peaks = measure.label(morphology.h_maxima(np.rint(distance * 2).astype(np.uint16), 2))
    return np.asarray(ndimage.maximum(distance, peaks, np.arange(1, peaks.max() + 1)))


def diameter_from_mask(mask: np.ndarray) -> float | None:
    """Typical diameter (px) of the roundish objects in a bool mask (touching ones too), or None."""
    mask = np.asarray(mask, dtype=bool)
    radii = _peak_radii(fill_small_holes(mask, mask.size / 50))
    if radii.size == 0:
        return None
    # Pale centres are holes a little smaller than a cell; gaps enclosed by a ring of cells are bigger.
    first = 2 * float(np.median(radii[radii >= 0.4 * np.percentile(radii, 90)]))
    radii = _peak_radii(fill_small_holes(mask, 0.6 * np.pi * (first / 2) ** 2))
    big = radii[radii >= 0.4 * np.percentile(radii, 90)]
    return 2 * float(np.median(big)) / _PEAK_TO_RADIUS if big.size else None


def _downsample(image: np.ndarray, target: int = 240) -> tuple[np.ndarray, int]:
    """Block-average an (H, W, C) image by the integer factor that brings its short side near
    ``target`` px (the h-maxima are the slow part; cells stay >= 10 px across at the largest
    magnifications)."""
    factor = max(1, min(image.shape[:2]) // target)
    if factor == 1:
        return image, 1
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = np.asarray(image[:h, :w], dtype=np.float32).reshape(h // factor, factor, w // factor, factor, -1)
    return blocks.mean(axis=(1, 3)), factor


def estimate_cell_diameter(image: np.ndarray) -> float | None:
    """Typical red-cell diameter (px) of an (H, W, 3) RGB smear, or None when no cells are found."""
    small, factor = _downsample(np.asarray(image))
    diameter = diameter_from_mask(cell_foreground(small))
    return None if diameter is None else diameter * factor


def resolve_scale(
    image: np.ndarray,
    path: str | Path | None = None,
    cell_diameter: float | None = None,
    pixel_size: float | None = None,
    default_diameter: float | None = None,
) -> CellScale:
    """The scale to use for one image, in order: ``cell_diameter`` (px), ``pixel_size`` (um/px),
    the file's metadata, an estimate from the image, ``default_diameter``."""
    check_scale_flags(cell_diameter, pixel_size)
    if cell_diameter is not None:
        return CellScale(float(cell_diameter), pixel_size, "--cell-diameter")
    if pixel_size is not None:
        return CellScale(RBC_DIAMETER_UM / pixel_size, float(pixel_size), "--pixel-size")
    from_file = pixel_size_from_file(path) if path is not None else None
    if from_file is not None:
        return CellScale(RBC_DIAMETER_UM / from_file, from_file, "file metadata")
    estimate = estimate_cell_diameter(image)
    if estimate is not None:
        return CellScale(estimate, None, ESTIMATED)
    if default_diameter is None:
        raise ValueError(f"{path or 'image'}: no cells found to estimate their size; pass --cell-diameter")
    return CellScale(float(default_diameter), None, "default (no cells found to estimate from)")


def image_to_rgb(image: Any) -> np.ndarray:
    """A ``load_image`` result (C, H, W) -> (H, W, C) float32 numpy array (rows first)."""
    array = np.asarray(image.as_tensor() if hasattr(image, "as_tensor") else image, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"expected a 2D image with channels, got shape {array.shape}")
    return np.ascontiguousarray(array.transpose(1, 2, 0))


def scale_from_config(cfg: Any, split: Split | None = None) -> dict[str, Any] | None:
    """:func:`training_scale` (red cells, from the images) and
    :func:`~medseg_dfl.cells.object_scale.training_object_scale` (the segmented object, from the label
    maps) of a 2D microscopy config's training cases: those of ``split``
    (default: :func:`~medseg_dfl.data.folds.training_split` of ``cfg``, so a fold run measures its
    own fold's training cases); None for anything else (3D, CT/MR, unreadable data: the scale is
    optional, training never fails for it)."""
    if cfg.data.spatial_dims != 2 or cfg.data.modality != "microscopy" or cfg.data.in_channels < 3:
        return None
    try:
        split = training_split(cfg) if split is None else split
        red_cells = training_scale([pair.image for pair in split.train_pairs])
        # The segmented object's size too: the ruler of single-cell (white-cell) models, whose red
        # cells are too few or too pale to measure (medseg_dfl.cells.object_scale).
        labels = [pair.label for pair in split.train_pairs if pair.label is not None]
        entry = {**(red_cells or {}), **(training_object_scale(labels) or {})}
        return entry or None
    except (ValueError, OSError):
        return None


def training_scale(image_paths: list[Path], max_images: int = 16) -> dict[str, Any] | None:
    """The checkpoint's ``scale`` entry: the median red-cell diameter (px) estimated on up to
    ``max_images`` training images (evenly spread), or None when no image gives an estimate."""

    paths = list(image_paths)
    if not paths:
        return None
    picked = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(max_images, len(paths))).astype(int))]
    diameters = []
    for path in picked:
        rgb = image_to_rgb(load_image(path))
        if rgb.shape[-1] >= 3:
            estimate = estimate_cell_diameter(rgb)
            if estimate is not None:
                diameters.append(estimate)
    if not diameters:
        return None
    return {
        "cell_diameter_px": round(float(np.median(diameters)), 3),
        "source": f"estimated from {len(diameters)} training images",
    }


def write_scale_file(
    output_dir: str | Path, model_diameter: float, model_source: str, images: dict[str, dict[str, Any]],
    merge: bool = False,
) -> Path:
    """Write ``output_dir/scale.json`` atomically: the model's red-cell diameter and where it comes
    from, and per image (by name) its :meth:`CellScale.record`. ``merge``: keep the entries of an
    earlier run into the same folder (``infer`` skips finished images) when its model scale was the same."""
    path = Path(output_dir) / SCALE_FILE
    entries: dict[str, dict[str, Any]] = {}
    if merge and path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            earlier = {}
        if isinstance(earlier, dict) and earlier.get("model_cell_diameter_px") == model_diameter:
            entries = {k: v for k, v in (earlier.get("images") or {}).items() if isinstance(v, dict)}
    entries.update(images)
    write_json(path, {
        "model_cell_diameter_px": model_diameter, "model_scale_source": model_source, "images": entries,
    })  # fmt: skip
    return path


def unusual_estimates(records: dict[Any, dict[str, Any]], tolerance: float = UNUSUAL_SCALE,
                      min_images: int = 5) -> tuple[float, list[str]] | None:  # fmt: skip
    """(median, names) of the images whose *estimated* red-cell diameter is more than ``tolerance``
    away from the median estimate of ``records`` (:meth:`CellScale.record` entries by name or path), or None
    when fewer than ``min_images`` were estimated. On BCCD (one microscope, 87 images) the 4
    estimates below 78 px against a median of 88 came from granules and debris and doubled the
    red-cell counts of those images: a folder from one microscope is better served by one
    ``--cell-diameter``, and this says which images to look at."""
    estimated = {str(name): r["cell_diameter_px"] for name, r in records.items() if r.get("source") == ESTIMATED}
    if len(estimated) < min_images:
        return None
    median = float(np.median(list(estimated.values())))
    return median, sorted(name for name, d in estimated.items() if abs(d - median) > tolerance * median)
