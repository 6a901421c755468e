"""A small, shippable BCCD sample with weak masks (``medseg-dfl sample-data --kind bccd``).

BCCD (``Shenggan/BCCD_Dataset``) is MIT-licensed, so a few of its smears may ship with the project
(with its licence): :func:`write_sample` converts ``count`` images spread evenly over its
``train.txt`` (never ``val.txt``/``test.txt``, which stay held out for scoring) exactly as
``datasets fetch bccd-masks`` does (:mod:`medseg_dfl.datasets.bccd_masks`: weak masks from the
boxes, shrunk to the synthetic smears' 25 px red cells), and writes LICENSE, README.md (the images
it holds) and dataset.json. ``sample_data/blood_smear_bccd`` is its output; the demo trains on it
together with the synthetic smears (its dataset.json lists both).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from medseg_dfl.datasets.bccd_masks import (
    CLASS_NAMES,
    MaskParams,
    convert_one,
    dataset_entry,
    source_cell_diameter,
)
from medseg_dfl.io.atomic import write_text
from medseg_dfl.io.dataset_json import read_dataset_json, write_dataset_json
from medseg_dfl.progress import ProgressCallback, report

__all__ = ["SAMPLE_SOURCE", "sample_names", "write_sample"]

SAMPLE_SOURCE = "https://github.com/Shenggan/BCCD_Dataset"


def sample_names(root: Path, count: int) -> list[str]:
    """``count`` image names spread evenly over the source's ``train.txt`` (never ``val``/``test``)."""
    path = root / "ImageSets" / "Main" / "train.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the sample is drawn from BCCD's train.txt only)")
    train = path.read_text().split()
    if not 1 <= count <= len(train):
        raise ValueError(f"count must be in 1..{len(train)} (train.txt images), got {count}")
    return [train[i] for i in np.unique(np.linspace(0, len(train) - 1, count).round().astype(int))]


def _merged_lists(out: Path, names: list[str], also: Path | None) -> dict[str, list]:
    """training = the sample (+ ``also``'s training list), validation = ``also``'s validation list."""
    lists = {"training": [dataset_entry(n) for n in names], "validation": []}
    if also is None:
        return lists
    other = read_dataset_json(also)
    relative = Path(os.path.relpath(also, out)).as_posix()
    for key in lists:
        lists[key] = [{k: f"{relative}/{v}" for k, v in entry.items()} for entry in other.get(key) or []] + lists[key]
    return lists


def _prepare_sample_folder(out: Path, overwrite: bool) -> None:
    """Create ``out/images`` and ``out/labels``; an earlier sample's PNGs are removed only with ``overwrite``."""
    old = [p for sub in ("images", "labels") if (out / sub).is_dir() for p in sorted((out / sub).glob("*.png"))]
    if old and not overwrite:
        raise FileExistsError(f"{out} already holds a sample ({old[0]}); choose another folder or overwrite")
    for path in old:
        path.unlink()
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def write_sample(source: Path, out: Path, count: int = 20, also: Path | None = None,
                 params: MaskParams | None = None, overwrite: bool = False,
                 progress: ProgressCallback | None = None) -> list[str]:
    """A small shippable BCCD sample: ``count`` ``train.txt`` images (spread evenly) with their weak
    masks, shrunk to ``params.target_diameter`` px red cells, plus LICENSE, README.md, dataset.json.

    ``also``: a dataset folder (its dataset.json) whose training and validation lists are merged in,
    by paths relative to ``out`` (the demo trains on the synthetic smears and this sample together).
    The source's red-cell diameter is the median estimate over its ``train.txt`` images (deterministic:
    the same source gives the same bytes). An earlier sample in ``out`` is replaced only with
    ``overwrite``. Returns the image names written.
    """
    params = params or MaskParams()
    root = Path(source)
    if not (root / "JPEGImages").is_dir() or not (root / "Annotations").is_dir():
        raise FileNotFoundError(f"{root}: not a BCCD folder (expected JPEGImages/ + Annotations/)")
    names = sample_names(root, count)
    train = (root / "ImageSets" / "Main" / "train.txt").read_text().split()
    diameter = float(np.median(source_cell_diameter([root / "JPEGImages" / f"{n}.jpg" for n in train], params)))
    if also is not None and not (Path(also) / "dataset.json").is_file():
        raise FileNotFoundError(f"{Path(also) / 'dataset.json'}: missing (the data set to list beside the sample)")
    _prepare_sample_folder(out, overwrite)
    for done, name in enumerate(names, start=1):
        convert_one(root / "JPEGImages" / f"{name}.jpg", root / "Annotations" / f"{name}.xml", out, diameter, params)
        report(progress, done, len(names), name)
    lists = _merged_lists(out, names, also)
    write_dataset_json(out, {
        "name": "BCCD sample (weak masks)", "licence": "MIT", "source": SAMPLE_SOURCE, "tensorImageSize": "2D",
        "modality": {"0": "microscopy"}, "labels": {str(i): n for i, n in enumerate(CLASS_NAMES)},
        "numTraining": len(lists["training"]), "numValidation": len(lists["validation"]), **lists,
        **({"data_folders": [Path(os.path.relpath(also, out)).as_posix()]} if also is not None else {}),
        "sample": {"images": names, "source_cell_diameter_px": round(diameter, 2),
                   "target_cell_diameter_px": params.target_diameter,
                   "unboxed_stained_blobs_as_platelets": params.unboxed_platelets},
    })
    _write_sample_readme(root, out, names, diameter, params, also)
    return names


def _write_sample_readme(root: Path, out: Path, names: list[str], diameter: float, params: MaskParams,
                         also: Path | None) -> None:
    licence = root / "LICENSE"
    if not licence.is_file():
        raise FileNotFoundError(f"{licence}: missing (BCCD's MIT licence must ship with its images)")
    shutil.copyfile(licence, out / "LICENSE")
    merged = (f"\n`dataset.json` also lists the `{also.name}` smears (training and validation), so a config "
              "whose `data.root` is this folder trains on both and validates on those.\n") if also else ""
    write_text(out / "README.md", (
        f"# BCCD sample with weak masks\n\n{len(names)} smears from the BCCD dataset ({SAMPLE_SOURCE}, "
        "MIT licence: see LICENSE, copyright (c) 2017 shenggan), taken evenly from its `train.txt` "
        "(none from `val.txt` or `test.txt`):\n\n" + ", ".join(names) + "\n\n"
        "Masks (`labels/`, 0 background, 1 rbc, 2 wbc, 3 platelet) are **weak labels** derived from BCCD's "
        "boxes by classical segmentation (`medseg_dfl.datasets.bccd_masks.mask_from_boxes`; unboxed stained "
        f"blobs labelled platelets: {params.unboxed_platelets}). Images (area-averaged) and masks are shrunk "
        f"from 640 x 480 so red cells are about {params.target_diameter:g} px across, the synthetic smears' "
        f"scale (source red cells: {diameter:.1f} px, the median estimate over train.txt images).\n{merged}\n"
        "Regenerate (byte for byte) from a copy of BCCD, in the folder that holds this one:\n\n"
        f"    medseg-dfl sample-data {out.name} --kind bccd --from BCCD_Dataset --count {len(names)}"
        + (f" --with {Path(os.path.relpath(also, out.parent)).as_posix()}" if also else "")
        + ("" if params.unboxed_platelets else " --boxed-platelets-only") + " --overwrite\n"))
