"""``wbc``: the white-blood-cell images of Zheng et al. 2018 (GitHub ``zxaoyou/segmentation_WBC``).

Source layout: ``Dataset 1/NNN.bmp`` (RGB) + ``Dataset 1/NNN.png`` (mask 0 background incl. red
cells, 128 cytoplasm, 255 nucleus), and ``Dataset 2/`` alike when present (either one alone is
converted too: a copy holding only the other lab's ``Dataset 2/``). Output, read by
``medseg_dfl.io.pairing`` through its ``dataset.json``:

- ``images/d1_NNN.png`` (RGB) and ``labels/d1_NNN.png`` (uint8: 0 background, 1 cytoplasm,
  2 nucleus; a stray mask value is mapped to the nearest of 0/128/255);
- ``dataset.json``: Dataset 1 as ``training`` + a fixed ``validation`` list (20 %, seed 0);
  Dataset 2 (another scanner and stain), when present, as the ``test`` list: an independent test
  set that training never reads (with Dataset 2 alone, it is the training/validation set);
- ``README.md`` (source, citation, conversion figures) and the repository's ``LICENSE``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medseg_dfl.datasets._staging import (
    find_root,
    seeded_validation,
    source_folder,
    write_provenance,
)
from medseg_dfl.datasets.registry import DatasetInfo
from medseg_dfl.io.dataset_json import write_dataset_json
from medseg_dfl.progress import ProgressCallback, report

__all__ = ["ARCHIVE_URL", "CLASS_NAMES", "MASK_LEVELS", "convert", "mask_to_classes"]

ARCHIVE_URL = "https://github.com/zxaoyou/segmentation_WBC/archive/refs/heads/master.zip"
MASK_LEVELS = (0, 128, 255)  # background, cytoplasm, nucleus in the source masks
CLASS_NAMES = ("background", "cytoplasm", "nucleus")
SUBSETS = {"Dataset 1": "d1", "Dataset 2": "d2"}


def mask_to_classes(mask: np.ndarray) -> np.ndarray:
    """Grey mask -> class indices 0/1/2: each value goes to the nearest of 0/128/255 (ties to the lower)."""
    levels = np.asarray(MASK_LEVELS, dtype=np.int16)
    return np.abs(mask.astype(np.int16)[..., None] - levels).argmin(axis=-1).astype(np.uint8)


def _subset_pairs(folder: Path) -> list[tuple[Path, Path]]:
    images = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".bmp" and not p.name.startswith(".")}
    masks = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")}
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        raise ValueError(f"{folder}: images and masks do not pair up (NNN.bmp + NNN.png): {', '.join(unpaired)}")
    if not images:
        raise FileNotFoundError(f"{folder}: no NNN.bmp + NNN.png pairs")
    return [(images[s], masks[s]) for s in sorted(images)]


def _convert_pair(image_path: Path, mask_path: Path, out: Path, case: str) -> tuple[np.ndarray, int]:
    """Write one RGB image + class mask; return the class pixel counts and the number of stray mask pixels."""
    with Image.open(image_path) as im:
        image = im.convert("RGB")
    with Image.open(mask_path) as m:
        grey = np.asarray(m.convert("L") if m.mode != "L" else m)
    if image.size != (grey.shape[1], grey.shape[0]):
        raise ValueError(f"{mask_path}: mask is {grey.shape[1]}x{grey.shape[0]}, image {image_path.name} is "
                         f"{image.size[0]}x{image.size[1]}")
    classes = mask_to_classes(grey)
    image.save(out / "images" / f"{case}.png")
    Image.fromarray(classes, mode="L").save(out / "labels" / f"{case}.png")
    stray = int((~np.isin(grey, MASK_LEVELS)).sum())
    return np.bincount(classes.ravel(), minlength=len(CLASS_NAMES)), stray


def _source_root(source: Path | None, work: Path) -> Path:
    base = source_folder(source, work, ARCHIVE_URL, "segmentation_WBC.zip")
    return find_root(base, lambda p: any((p / name).is_dir() for name in SUBSETS),
                     "the segmentation_WBC repository ('Dataset 1/' and/or 'Dataset 2/')", source or ARCHIVE_URL)


def _entry(case: str) -> dict[str, str]:
    return {"image": f"images/{case}.png", "label": f"labels/{case}.png"}


def convert(info: DatasetInfo, source: Path | None, out: Path, work: Path, progress: ProgressCallback | None) -> None:
    root = _source_root(source, work)
    subsets = {tag: _subset_pairs(root / name) for name, tag in SUBSETS.items() if (root / name).is_dir()}
    (out / "images").mkdir()
    (out / "labels").mkdir()
    total = sum(len(pairs) for pairs in subsets.values())
    counts = {tag: np.zeros(len(CLASS_NAMES), dtype=np.int64) for tag in subsets}
    stray_pixels, stray_masks, done = 0, 0, 0
    for tag, pairs in subsets.items():
        for image_path, mask_path in pairs:
            case = f"{tag}_{image_path.stem}"
            pixel_counts, stray = _convert_pair(image_path, mask_path, out, case)
            counts[tag] += pixel_counts
            stray_pixels, stray_masks = stray_pixels + stray, stray_masks + (stray > 0)
            done += 1
            report(progress, done, total, case)
    # Dataset 1 trains and validates, Dataset 2 tests; a copy with Dataset 2 only trains on it.
    main_tag = "d1" if "d1" in subsets else "d2"
    test = [f"d2_{img.stem}" for img, _ in subsets["d2"]] if main_tag == "d1" and "d2" in subsets else []
    d1 = [f"{main_tag}_{img.stem}" for img, _ in subsets[main_tag]]
    val = seeded_validation(d1)
    shares = {tag: {n: round(float(c[i] / c.sum()), 4) for i, n in enumerate(CLASS_NAMES)} for tag, c in counts.items()}
    conversion = {"cases": {tag: len(pairs) for tag, pairs in subsets.items()}, "validation_seed": 0,
                  "masks_with_stray_values": stray_masks, "stray_pixels_mapped_to_nearest": stray_pixels,
                  "class_pixel_shares": shares}
    write_dataset_json(out, {
        "name": "segmentation_WBC",
        "description": "White blood cells (Zheng et al. 2018): " + (
            "Dataset 1 for training/validation, Dataset 2 (when present) as an independent test set"
            if main_tag == "d1" else "Dataset 2 only (the source has no Dataset 1) for training/validation"),
        "reference": info.citation, "licence": info.licence, "source": info.source,
        "tensorImageSize": "2D", "modality": {"0": "RGB"},
        "labels": {str(i): n for i, n in enumerate(CLASS_NAMES)},
        "numTraining": len(d1) - len(val), "numValidation": len(val), "numTest": len(test),
        "training": [_entry(c) for c in d1 if c not in val],
        "validation": [_entry(c) for c in d1 if c in val],
        "test": [_entry(c) for c in test],
        "conversion": conversion,
    })
    main_name = "Dataset 1" if main_tag == "d1" else "Dataset 2 (Dataset 1 not in the source)"
    notes = (f"{main_name}: {len(d1)} cases ({len(d1) - len(val)} training, {len(val)} validation, seed 0)"
             + (f"; Dataset 2: {len(test)} cases as the test list" if test else
                "; Dataset 2 not in the source" if main_tag == "d1" else "") +
             ". Images: BMP -> RGB PNG. Masks 0/128/255 -> 0 background / 1 cytoplasm / 2 nucleus "
             f"(stray values to the nearest: {stray_pixels} pixels in {stray_masks} masks). "
             f"Class pixel shares: {shares}.")
    write_provenance(out, title=info.title, source=info.source, licence=info.licence, citation=info.citation,
                     notes=notes, licence_file=root / "LICENSE")
