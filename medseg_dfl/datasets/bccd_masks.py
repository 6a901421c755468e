"""``bccd-masks``: BCCD smears with semantic masks derived from the boxes (weak labels, for training).

BCCD (GitHub ``Shenggan/BCCD_Dataset``, MIT) has one box per annotated cell and no masks. This
module segments each image classically and uses the boxes only to name what it found:

- cell foreground: optical density against the slide's background above Li's threshold (the same
  test :func:`medseg_dfl.cells.scale.cell_foreground` uses to measure red cells), red cells' pale
  centres filled (holes up to 0.6 red-cell areas), opened and closed;
- stain: the blue excess ``B - (R + G) / 2`` of the Giemsa/Wright stain. Nuclei and platelets are
  purple-blue (+40 to +90), red cells salmon (-20), the background and white-cell cytoplasm grey
  (about 0). Inside each box, Otsu's threshold on the stain (at least :attr:`MaskParams.stain_min`)
  splits the stained object from the rest;
- ``wbc`` (2): inside a ``WBC`` box, the nucleus (stained pixels) plus the cytoplasm, taken as the
  ellipse inscribed in the box (a box cut by the image border is first extended to a square:
  cells are round) less the red cells that reach into it from outside (salmon foreground
  connected to pixels outside the ellipse);
- ``platelet`` (3): inside a ``Platelets`` box, the stained blob(s) (holes filled); a box with no
  stained blob (a pale platelet) gets a disc of a quarter of the box's short side at its centre,
  so every platelet box is represented;
- ``rbc`` (1): all other cell foreground. BCCD boxes only some of the red cells (many are left
  unboxed) but almost every unboxed cell is a red cell, so unboxed foreground is labelled ``rbc``;
  stained dots inside red cells stay ``rbc``. Isolated stained blobs of platelet size outside
  every box (platelets the annotators missed; a few are stain debris) are labelled ``platelet``
  (:attr:`MaskParams.unboxed_platelets`), because teaching them as red cells would teach the
  network that platelets look like red cells.

**These are weak labels**: the class comes from a box, the outline from thresholds; white-cell
cytoplasm is an ellipse, overlapping cells are not separated, and the red-cell boxes' gaps are
filled with guesses. They are good enough to learn what real cells look like, not to score
segmentation against.

The converter writes each image and mask shrunk so the red cells are about
:attr:`MaskParams.target_diameter` px across (the scale of the synthetic smears). The source's
diameter is measured by :func:`medseg_dfl.cells.scale.estimate_cell_diameter` (the estimator
``medseg-dfl count`` and the checkpoint's recorded training scale use too, so counting resamples
BCCD-like inputs to the training scale), as the median over a sample of images: one factor for all. Output: ``images/*.png`` (RGB), ``labels/*.png`` (uint8
0 background, 1 rbc, 2 wbc, 3 platelet), ``dataset.json`` (``training`` = the source's
``train.txt``, ``validation`` = ``val.txt``), ``README.md`` + ``LICENSE`` (provenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import filters, morphology

from medseg_dfl.cells.scale import estimate_cell_diameter, fill_small_holes
from medseg_dfl.datasets._staging import write_provenance
from medseg_dfl.datasets.bccd import Box, bccd_source_root, parse_annotation
from medseg_dfl.datasets.registry import DatasetInfo
from medseg_dfl.io.dataset_json import write_dataset_json
from medseg_dfl.progress import ProgressCallback, report

__all__ = [
    "CLASS_NAMES",
    "MaskParams",
    "convert",
    "convert_one",
    "dataset_entry",
    "mask_from_boxes",
    "shrink_pair",
    "source_cell_diameter",
    "stain_score",
]

CLASS_NAMES = ("background", "rbc", "wbc", "platelet")
BACKGROUND, RBC, WBC, PLATELET = range(4)


@dataclass(frozen=True)
class MaskParams:
    stain_min: float = 25.0  # lowest blue excess (0-255 units) a stained object may have
    salmon_min: float = 8.0  # R - B above which foreground is red-cell coloured (kept out of white cells)
    unboxed_platelets: bool = True  # label isolated stained blobs outside every box as platelets
    target_diameter: float = 25.0  # red-cell diameter (px) of the written images and masks
    fallback_diameter: float = 88.0  # red-cell diameter (px) when an image gives no estimate (BCCD's median)


def stain_score(rgb: np.ndarray) -> np.ndarray:
    """Blue excess ``B - (R + G) / 2`` of an (H, W, 3) RGB image, in 0-255 units (float32)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    return rgb[..., 2] - (rgb[..., 0] + rgb[..., 1]) / 2


def _box_slices(box: Box, shape: tuple[int, int]) -> tuple[slice, slice]:
    _, x0, y0, x1, y1 = box
    return slice(max(0, y0), min(shape[0], y1)), slice(max(0, x0), min(shape[1], x1))


def _stained_in_box(score: np.ndarray, box: Box, floor: float) -> np.ndarray:
    """Full-size bool mask: pixels of ``box`` above max(Otsu of the box's stain, ``floor``)."""
    rows, cols = _box_slices(box, score.shape)
    inside = score[rows, cols]
    out = np.zeros(score.shape, dtype=bool)
    if inside.size < 4 or inside.max() <= floor:
        return out
    threshold = max(float(filters.threshold_otsu(inside)), floor)
    out[rows, cols] = ndimage.uniform_filter(inside, 3) > threshold
    return out


def _cell_ellipse(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """The ellipse inscribed in ``box``; a box cut by the image border is first made square outwards."""
    _, x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    if x0 <= 1 and x1 - x0 < side:
        x0 = x1 - side
    elif x1 >= shape[1] - 1 and x1 - x0 < side:
        x1 = x0 + side
    if y0 <= 1 and y1 - y0 < side:
        y0 = y1 - side
    elif y1 >= shape[0] - 1 and y1 - y0 < side:
        y1 = y0 + side
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, max((y1 - y0) / 2, 1), max((x1 - x0) / 2, 1)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _white_cell(rgb: np.ndarray, score: np.ndarray, foreground: np.ndarray, box: Box, params: MaskParams) -> np.ndarray:
    """Nucleus + cytoplasm of the white cell in ``box`` (see the module docstring)."""
    nucleus = _stained_in_box(score, box, params.stain_min)
    ellipse = _cell_ellipse(box, score.shape)
    salmon = foreground & (rgb[..., 0] - rgb[..., 2] > params.salmon_min)
    labels, _ = ndimage.label(salmon)
    intruding = np.unique(labels[salmon & ~ellipse])
    red_cells = np.isin(labels, intruding[intruding > 0])
    cell = (ellipse & ~red_cells) | nucleus
    rows, cols = _box_slices(box, score.shape)
    region = np.zeros_like(cell)
    region[rows, cols] = ndimage.binary_fill_holes(ndimage.binary_opening(cell[rows, cols], morphology.disk(2)))
    return region | nucleus


def _platelet(score: np.ndarray, box: Box, params: MaskParams) -> np.ndarray:
    """The stained blob(s) in a platelet box; a central disc when none is stained."""
    blob = ndimage.binary_fill_holes(_stained_in_box(score, box, params.stain_min))
    if blob.any():
        return blob
    _, x0, y0, x1, y1 = box
    yy, xx = np.ogrid[: score.shape[0], : score.shape[1]]
    radius = max(min(x1 - x0, y1 - y0) / 4, 1.0)
    return (yy - (y0 + y1) / 2) ** 2 + (xx - (x0 + x1) / 2) ** 2 <= radius**2


def _unboxed_platelets(score: np.ndarray, foreground: np.ndarray, boxed: np.ndarray, diameter: float,
                       params: MaskParams) -> np.ndarray:
    """Stained blobs outside every box, of platelet size, mostly surrounded by background."""
    stained = ndimage.binary_opening(score > max(params.stain_min, 35.0), morphology.disk(2)) & ~boxed
    labels, count = ndimage.label(ndimage.binary_fill_holes(stained))
    if count == 0:
        return np.zeros_like(stained)
    index = np.arange(1, count + 1)
    areas = ndimage.sum(np.ones_like(score), labels, index)
    rbc_area = np.pi * (diameter / 2) ** 2
    disk = morphology.disk(max(2, round(diameter / 15)))
    ring = ndimage.binary_dilation(labels > 0, disk) & (labels == 0)
    ring_labels = ndimage.grey_dilation(labels, footprint=disk) * ring
    ring_cells = ndimage.mean(foreground, ring_labels, index) if ring.any() else np.zeros(count)
    keep = (areas >= 0.01 * rbc_area) & (areas <= 0.25 * rbc_area) & (np.nan_to_num(ring_cells, nan=1.0) < 0.5)
    return np.isin(labels, index[keep])


def red_cells(rgb: np.ndarray, diameter: float) -> np.ndarray:
    """Red-cell foreground (bool): red excess ``R - G`` above Otsu's threshold, smoothed; pale
    centres filled (holes up to 0.6 red-cell areas), opened and closed at the cells' scale."""
    excess = ndimage.uniform_filter(rgb[..., 0] - rgb[..., 1], 5)
    if excess.max() - excess.min() < 1.0:  # a flat image: no cells
        return np.zeros(excess.shape, dtype=bool)
    max_hole = 0.6 * np.pi * (diameter / 2) ** 2
    foreground = fill_small_holes(excess > filters.threshold_otsu(excess), max_hole)
    disk = morphology.disk(max(1, round(diameter / 30)))
    foreground = ndimage.binary_closing(ndimage.binary_opening(foreground, disk), disk)
    return fill_small_holes(foreground, max_hole)


def mask_from_boxes(rgb: np.ndarray, boxes: Sequence[Box], cell_diameter: float | None = None,
                    params: MaskParams | None = None) -> np.ndarray:
    """Semantic mask (H, W) uint8 (0 background, 1 rbc, 2 wbc, 3 platelet) of an (H, W, 3) RGB smear
    from its boxes ``(class, xmin, ymin, xmax, ymax)``, class ``rbc``/``wbc``/``platelet`` (pixels,
    as in the VOC files). ``cell_diameter``: red-cell diameter in px (estimated when None)."""
    params = params or MaskParams()
    rgb = np.asarray(rgb, dtype=np.float32)
    score = stain_score(rgb)  # checks the shape
    rgb = rgb * 255.0 if rgb.max() <= 1.0 else rgb
    unknown = sorted({b[0] for b in boxes} - {"rbc", "wbc", "platelet"})
    if unknown:
        raise ValueError(f"unknown box class(es) {unknown} (expected rbc, wbc, platelet)")
    if cell_diameter is None:
        cell_diameter = estimate_cell_diameter(rgb) or params.fallback_diameter
    foreground = red_cells(rgb, cell_diameter)
    mask = np.where(foreground, RBC, BACKGROUND).astype(np.uint8)
    boxed = np.zeros(foreground.shape, dtype=bool)
    for box in boxes:
        if box[0] != "rbc":
            boxed[_box_slices(box, foreground.shape)] = True
    if params.unboxed_platelets:
        mask[_unboxed_platelets(score, foreground, boxed, cell_diameter, params)] = PLATELET
    for box in boxes:
        if box[0] == "wbc":
            mask[_white_cell(rgb, score, foreground, box, params)] = WBC
    for box in boxes:  # last: a platelet over a white cell's ellipse is still a platelet
        if box[0] == "platelet":
            mask[_platelet(score, box, params)] = PLATELET
    return mask


def shrink_pair(rgb: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask resized by ``factor`` (< 1 shrinks): the image area-averaged, the mask by
    the class with the largest share of each new pixel (small platelets survive as well as they can)."""
    if not 0 < factor <= 1:
        raise ValueError(f"shrink factor must be in (0, 1], got {factor}")
    height, width = mask.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    image = Image.fromarray(np.clip(np.asarray(rgb), 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BOX)
    shares = [np.asarray(Image.fromarray((mask == c).astype(np.float32)).resize(size, Image.Resampling.BOX))
              for c in range(len(CLASS_NAMES))]
    return np.asarray(image), np.argmax(np.stack(shares), axis=0).astype(np.uint8)


def convert_one(image_path: Path, xml_path: Path, out: Path, diameter: float,
                params: MaskParams) -> np.ndarray:
    """Write one shrunk image + mask (red cells ``diameter`` px across in the source); class pixel counts."""
    with Image.open(image_path) as im:
        rgb = np.asarray(im.convert("RGB"))
    boxes = [b for b in parse_annotation(xml_path) if b[3] > b[1] and b[4] > b[2]]
    mask = mask_from_boxes(rgb, boxes, diameter, params)
    small_rgb, small_mask = shrink_pair(rgb, mask, min(1.0, params.target_diameter / diameter))
    Image.fromarray(small_rgb).save(out / "images" / f"{image_path.stem}.png")
    Image.fromarray(small_mask, mode="L").save(out / "labels" / f"{image_path.stem}.png")
    return np.bincount(small_mask.ravel(), minlength=len(CLASS_NAMES))


def source_cell_diameter(images: Sequence[Path], params: MaskParams, max_images: int = 24) -> list[float]:
    """Red-cell diameters (px) estimated on up to ``max_images`` evenly spread ``images``.

    BCCD was taken at one magnification, so their median is used for every image: the per-image
    estimate is off by more than 20 % on about 1 image in 30 (11 of 292: clumps, a large white cell).
    """
    picked = [images[i] for i in np.unique(np.linspace(0, len(images) - 1, min(max_images, len(images))).astype(int))]
    estimates = []
    for path in picked:
        with Image.open(path) as im:
            estimates.append(estimate_cell_diameter(np.asarray(im.convert("RGB"))))
    return [e for e in estimates if e is not None] or [params.fallback_diameter]


def _split_lists(root: Path, converted: set[str]) -> dict[str, list[str]]:
    """The source's train/val/test image sets, limited to the converted images (source order)."""
    lists = {}
    for split in ("train", "val", "test"):
        path = root / "ImageSets" / "Main" / f"{split}.txt"
        if path.is_file():
            lists[split] = [n for n in path.read_text().split() if n in converted]
    if not lists.get("train"):
        raise FileNotFoundError(f"{root / 'ImageSets' / 'Main' / 'train.txt'}: missing, or none of its images converted")
    return lists


def dataset_entry(name: str) -> dict[str, str]:
    """The dataset.json entry of one converted image."""
    return {"image": f"images/{name}.png", "label": f"labels/{name}.png"}


def _write_metadata(info: DatasetInfo, root: Path, out: Path, lists: dict[str, list[str]], conversion: dict) -> None:
    """dataset.json (training = train.txt, validation = val.txt, test = test.txt) and the provenance."""
    write_dataset_json(out, {
        "name": "BCCD masks",
        "description": "BCCD smears with weak semantic masks derived from the VOC boxes by classical segmentation",
        "reference": info.citation, "licence": info.licence, "source": info.source, "tensorImageSize": "2D",
        "modality": {"0": "microscopy"}, "labels": {str(i): n for i, n in enumerate(CLASS_NAMES)},
        "numTraining": len(lists["train"]), "numValidation": len(lists.get("val", [])),
        "numTest": len(lists.get("test", [])),
        "training": [dataset_entry(n) for n in lists["train"]], "validation": [dataset_entry(n) for n in lists.get("val", [])],
        "test": [dataset_entry(n) for n in lists.get("test", [])], "conversion": conversion,
    })
    source = conversion["source_cell_diameter_px"]
    notes = (
        f"{conversion['images']} images; splits {conversion['splits']} (training = train.txt, validation = "
        "val.txt). **The masks are weak labels**: derived from the boxes by classical segmentation (red excess "
        "and stain thresholds; white cells = nucleus + the box's inscribed ellipse; platelets = the stained blob "
        "in each platelet box, and isolated platelet-sized stained blobs outside every box; other cell "
        "foreground = red cells, since BCCD leaves many red cells unboxed), not drawn by an expert. Images and "
        f"masks are shrunk so red cells are about {conversion['target_cell_diameter_px']:g} px across (source: "
        f"{source['used']} px, the median of {source['estimates']} images' estimates, used for all). "
        f"Class pixel shares {conversion['class_pixel_shares']}.")
    write_provenance(out, title=f"{info.title} (masks derived from boxes)", source=info.source, licence=info.licence,
                     citation=info.citation, notes=notes,
                     licence_file=root / "LICENSE" if (root / "LICENSE").is_file() else root.parent / "LICENSE")


def convert(info: DatasetInfo, source: Path | None, out: Path, work: Path, progress: ProgressCallback | None,
            params: MaskParams | None = None) -> None:
    """The registry's converter for ``bccd-masks`` (see the module docstring for the output)."""
    params = params or MaskParams()
    root = bccd_source_root(source, work)
    xmls = sorted(p for p in (root / "Annotations").glob("*.xml") if not p.name.startswith("."))
    if not xmls:
        raise FileNotFoundError(f"{root / 'Annotations'}: no .xml annotations")
    images = [root / "JPEGImages" / f"{xml.stem}.jpg" for xml in xmls]
    missing = [f"{xml} (its image {image})" for xml, image in zip(xmls, images, strict=True) if not image.is_file()]
    if missing:
        raise FileNotFoundError(f"images missing for: {', '.join(missing[:5])}")
    lists = _split_lists(root, {x.stem for x in xmls})
    (out / "images").mkdir()
    (out / "labels").mkdir()
    diameters = source_cell_diameter(images, params)
    diameter = float(np.median(diameters))
    pixels = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    for done, (xml, image) in enumerate(zip(xmls, images, strict=True), start=1):
        pixels += convert_one(image, xml, out, diameter, params)
        report(progress, done, len(xmls), image.name)
    _write_metadata(info, root, out, lists, {
        "images": len(xmls), "target_cell_diameter_px": params.target_diameter,
        "source_cell_diameter_px": {"used": round(diameter, 1), "estimates": len(diameters),
                                    "min": round(min(diameters), 1), "max": round(max(diameters), 1)},
        "class_pixel_shares": {n: round(float(pixels[i] / pixels.sum()), 4) for i, n in enumerate(CLASS_NAMES)},
        "splits": {k: len(v) for k, v in lists.items()},
        "labels_are": "weak: derived from boxes by classical segmentation (medseg_dfl.datasets.bccd_masks)",
        "unboxed_stained_blobs_as_platelets": params.unboxed_platelets,
    })
