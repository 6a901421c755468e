"""Synthetic sample data: blood smears (2D RGB PNG) and CT-like volumes (3D NIfTI).

:func:`generate_sample_data` made the committed ``sample_data/`` folders and makes larger sets for
benchmarks. Output is deterministic: the same arguments give byte-identical files, and sample
``i`` depends only on ``(seed, kind, i)``, never on ``count``. The renderers live in
:mod:`.synthetic_smear` and :mod:`.synthetic_volume` (pure numpy); this module does the I/O.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, SmearSample, make_blood_smear, make_smear
from medseg_dfl.data.synthetic_volume import VOLUME_CLASSES, make_volume
from medseg_dfl.io.atomic import write_bytes, write_text
from medseg_dfl.io.dataset_json import DATASET_JSON, dataset_json_path, read_dataset_json, write_dataset_json
from medseg_dfl.progress import ProgressCallback, report

__all__ = [
    "KINDS",
    "SMEAR_CLASSES",
    "VOLUME_CLASSES",
    "generate_sample_data",
    "make_blood_smear",
    "make_volume",
    "read_class_frequencies",
    "sample_seed",
    "smear_sample",
]

KINDS = ("blood-smear", "volume")
DEFAULT_SIZE = {"blood-smear": 256, "volume": (64, 64, 48)}
_STEM = {"blood-smear": "smear", "volume": "vol"}
_SUFFIX = {"blood-smear": ".png", "volume": ".nii.gz"}
VARIED_DIAMETERS = (20.0, 32.0)  # px: the range of red-cell diameters of ``variety`` smears
_SUBFOLDERS = ("images", "labels", "instances")
CELLS_CSV = "cells.csv"  # with ``instances``: one row per generated cell
_CELL_COLUMNS = ("image", "cell", "class", "centroid_x", "centroid_y", "area_px")
# Preview tints per class: smears rbc green, wbc blue, platelet yellow; volumes organ green, lesion red.
_OVERLAY = {
    "blood-smear": np.array([[0, 0, 0], [40, 200, 60], [40, 90, 255], [255, 220, 0]], np.float64),
    "volume": np.array([[0, 0, 0], [40, 200, 60], [255, 40, 40]], np.float64),
}


def sample_seed(seed: int, kind: str, index: int) -> int:
    """The seed of sample ``index``: independent of how many samples are generated."""
    return int(np.random.SeedSequence([seed, KINDS.index(kind), index]).generate_state(1)[0])


def _check_args(kind: str, count: int, size, seed: int, val_fraction: float) -> int | tuple[int, ...]:
    """Validate the arguments; return ``size`` normalised (int for smears, 3-tuple for volumes)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if size is None:
        return DEFAULT_SIZE[kind]
    sizes = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if kind == "blood-smear":
        if len(sizes) != 1 or int(sizes[0]) < 32:
            raise ValueError(f"blood-smear size must be one side length >= 32 pixels, got {size}")
        return int(sizes[0])
    sizes = sizes * 3 if len(sizes) == 1 else sizes
    if len(sizes) != 3 or min(sizes) < 16:
        raise ValueError(f"volume size must be one or three sizes >= 16 voxels (e.g. 64 or 64,64,48), got {size}")
    return tuple(int(s) for s in sizes)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _nifti_gz_bytes(array: np.ndarray, affine: np.ndarray, description: str) -> bytes:
    """A gzipped NIfTI-1 with scanner sform/qform and mm units; mtime 0 keeps bytes reproducible."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_data_dtype(array.dtype)
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = description.encode()[:79]
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=9, mtime=0)


def smear_sample(size: int, seed: int, variety: bool = False) -> SmearSample:
    """The smear ``generate_sample_data`` writes for a sample seed: the default magnification, or
    with ``variety`` a red-cell diameter drawn from :data:`VARIED_DIAMETERS` (and monocytes,
    platelet clumps, more blur: :func:`~medseg_dfl.data.synthetic_smear.make_smear`)."""
    if not variety:
        return make_smear(size, seed)
    diameter = float(np.random.default_rng([seed, 2]).uniform(*VARIED_DIAMETERS))
    return make_smear(size, seed, cell_diameter=diameter, variety=True)


def _render(kind: str, size, seed: int, variety: bool = False):
    """One sample's (image file bytes, label file bytes, image array, label array, smear or None)."""
    if kind == "blood-smear":
        smear = smear_sample(size, seed, variety)
        return _png_bytes(smear.image), _png_bytes(smear.label), smear.image, smear.label, smear
    image, label, affine = make_volume(size, seed)
    image_bytes = _nifti_gz_bytes(image, affine, "medseg-dfl synthetic CT (HU)")
    return image_bytes, _nifti_gz_bytes(label, affine, "medseg-dfl synthetic labels"), image, label, None


def _instance_rows(image_name: str, smear: SmearSample) -> list[dict]:
    """``cells.csv`` rows of the cells visible in ``smear`` (ids as in its instance map; x is the column)."""
    ids = np.unique(smear.instances)
    ids = ids[ids > 0]
    areas = np.bincount(smear.instances.ravel(), minlength=smear.instance_class.size)
    centres = ndimage.center_of_mass(np.ones(smear.instances.shape), smear.instances, ids) if ids.size else []
    return [{"image": image_name, "cell": int(i), "class": SMEAR_CLASSES[smear.instance_class[i]],
             "centroid_x": round(float(x), 2), "centroid_y": round(float(y), 2), "area_px": int(areas[i])}
            for i, (y, x) in zip(ids, centres, strict=True)]  # fmt: skip


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(_CELL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _prepare_output(output_dir: Path, overwrite: bool, instances: bool = False) -> None:
    """Create images/ and labels/ (and instances/); refuse to touch a folder that already holds a data set."""
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output is not a folder: {output_dir}")
    folders = [output_dir / sub for sub in _SUBFOLDERS]
    existing = [d for d in folders if d.is_dir() and any(d.iterdir())]
    if existing and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds data ({existing[0]} is not empty); choose another folder or overwrite"
        )
    for folder in folders[: 3 if instances else 2]:
        folder.mkdir(parents=True, exist_ok=True)


def _remove_stale(output_dir: Path, kind: str, keep: set[str], instances: bool) -> None:
    """After an overwrite, drop generated samples of an earlier, larger run (our stems only), and
    an earlier run's instance maps and cells.csv when this one writes none."""
    pattern = re.compile(rf"^{_STEM[kind]}_\d+{re.escape(_SUFFIX[kind])}$")
    for sub in _SUBFOLDERS:
        if not (output_dir / sub).is_dir():
            continue
        for path in (output_dir / sub).iterdir():
            if pattern.match(path.name) and (path.name not in keep or (sub == "instances" and not instances)):
                path.unlink()
    if not instances:
        (output_dir / CELLS_CSV).unlink(missing_ok=True)


def _overlay(kind: str, image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """RGB picture with the foreground classes tinted (colours in ``_OVERLAY``)."""
    rgb = image.astype(np.float64)
    mask = label > 0
    rgb[mask] = 0.45 * rgb[mask] + 0.55 * _OVERLAY[kind][label[mask]]
    return rgb.astype(np.uint8)


def _preview_tile(kind: str, image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Image above its overlay; for volumes the axial slice with the most lesion, CT window."""
    if kind == "volume":
        k = int(np.argmax((label == 2).sum(axis=(0, 1)) * 10 + (label == 1).sum(axis=(0, 1))))
        # Radiological display: rows = anterior..posterior; window [-160, 240] HU.
        grey = np.clip((image[:, :, k].T[::-1].astype(np.float64) + 160) / 400 * 255, 0, 255)
        image = np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
        label = label[:, :, k].T[::-1]
    return np.concatenate([image, _overlay(kind, image, label)], axis=0)


def _write_preview(path: Path, kind: str, samples: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """A small palette PNG: a row of images over a row of label overlays."""
    tiles = [_preview_tile(kind, image, label) for image, label in samples]
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0)), constant_values=255) for t in tiles]
    grid = Image.fromarray(np.concatenate(tiles, axis=1))
    scale = 2.0 if kind == "volume" else 0.75  # readable volume slices; smear preview < 150 KB
    grid = grid.resize((round(grid.width * scale), round(grid.height * scale)), Image.Resampling.NEAREST
                       if kind == "volume" else Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    grid.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buffer, format="PNG", optimize=True
    )
    write_bytes(path, buffer.getvalue())


def _dataset_json(kind: str, stems: list[str], n_val: int, size, seed: int, frequencies: dict) -> dict:
    suffix = _SUFFIX[kind]
    entries = [{"image": f"images/{s}{suffix}", "label": f"labels/{s}{suffix}"} for s in stems]
    names = SMEAR_CLASSES if kind == "blood-smear" else VOLUME_CLASSES
    n_train = len(stems) - n_val
    return {
        "name": "synthetic blood smears" if kind == "blood-smear" else "synthetic CT volumes",
        "description": "Synthetic data from medseg-dfl sample-data (medseg_dfl.data.synthetic)",
        "tensorImageSize": "2D" if kind == "blood-smear" else "3D",
        "modality": {"0": "microscopy"} if kind == "blood-smear" else {"0": "CT"},
        "labels": {str(i): name for i, name in enumerate(names)},
        "numTraining": n_train,
        "numValidation": n_val,
        "training": entries[:n_train],
        "validation": entries[n_train:],
        "class_frequencies": frequencies,
        "generator": {"kind": kind, "count": len(stems), "size": size, "seed": seed},
    }


def _write_samples(output_dir: Path, kind: str, stems: list[str], size, seed: int, variety: bool,
                   instances: bool, progress: ProgressCallback | None):
    """Render and write every sample; returns (image paths, class counts, preview samples, cells.csv rows)."""
    names = SMEAR_CLASSES if kind == "blood-smear" else VOLUME_CLASSES
    counts = np.zeros(len(names), np.int64)
    previews, image_paths, cell_rows = [], [], []
    for i, stem in enumerate(stems):
        image_bytes, label_bytes, image, label, smear = _render(kind, size, sample_seed(seed, kind, i), variety)
        name = f"{stem}{_SUFFIX[kind]}"
        write_bytes(output_dir / "images" / name, image_bytes)
        write_bytes(output_dir / "labels" / name, label_bytes)
        if instances:  # 16-bit PNG: ids up to 65535 (a 256 px field holds ~100 cells)
            write_bytes(output_dir / "instances" / name, _png_bytes(smear.instances.astype(np.uint16)))
            cell_rows.extend(_instance_rows(name, smear))
        counts += np.bincount(label.ravel(), minlength=len(names))[: len(names)]
        if len(previews) < (3 if kind == "blood-smear" else 4):
            previews.append((image, label))
        image_paths.append(output_dir / "images" / name)
        report(progress, i + 1, len(stems), stem)
    return image_paths, counts, previews, cell_rows


def generate_sample_data(
    output_dir: str | Path,
    kind: str,
    count: int,
    size: int | tuple[int, ...] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    *,
    variety: bool = False,
    instances: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Write ``count`` synthetic samples of ``kind`` ("blood-smear" or "volume") to ``output_dir``.

    Layout: ``images/<stem>``, ``labels/<stem>`` (``smear_000.png`` / ``vol_000.nii.gz``), a
    Decathlon-style ``dataset.json`` (the last ``round(count * val_fraction)`` samples are the
    "validation" list; class pixel frequencies under "class_frequencies") and ``preview.png``.
    ``size`` is the side length of a smear, or one (cube) or three sizes of a volume; None = 256 or
    64x64x48. Smears only: ``variety`` renders monocytes, platelet clumps, more blur and red cells
    20-32 px across (:func:`smear_sample`); ``instances`` also writes each smear's instance map
    (``instances/<stem>.png``, 16-bit: 0 background, else the cell's id) and ``cells.csv`` (one row
    per visible cell: ``image``, ``cell`` id, ``class`` name, ``centroid_x``/``centroid_y``,
    ``area_px``). An existing, non-empty ``images/``, ``labels/`` or ``instances/`` raises
    ``FileExistsError`` unless ``overwrite``. ``progress(done, total, stem)`` after each sample.
    Returns the image paths.
    """
    size = _check_args(kind, count, size, seed, val_fraction)
    if kind != "blood-smear" and (variety or instances):
        raise ValueError(f"variety and instances are options of blood-smear samples, not of {kind!r}")
    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite, instances)
    width = max(3, len(str(count - 1)))
    stems = [f"{_STEM[kind]}_{i:0{width}d}" for i in range(count)]
    image_paths, counts, previews, cell_rows = _write_samples(
        output_dir, kind, stems, size, seed, variety, instances, progress)
    if overwrite:
        _remove_stale(output_dir, kind, {p.name for p in image_paths}, instances)
    if instances:
        write_text(output_dir / CELLS_CSV, _csv_text(cell_rows))
    names = SMEAR_CLASSES if kind == "blood-smear" else VOLUME_CLASSES
    frequencies = {name: round(float(c) / float(counts.sum()), 6) for name, c in zip(names, counts, strict=True)}
    n_val = min(int(round(count * val_fraction)), count - 1)
    meta = _dataset_json(kind, stems, n_val, size, seed, frequencies)
    meta["generator"].update({key: True for key, on in (("variety", variety), ("instances", instances)) if on})
    write_dataset_json(output_dir, meta)
    _write_preview(output_dir / "preview.png", kind, previews)
    return image_paths


def read_class_frequencies(output_dir: str | Path) -> dict[str, float]:
    """Class pixel/voxel frequencies recorded in ``output_dir/dataset.json`` by the generator."""
    path = dataset_json_path(output_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no {DATASET_JSON} in {output_dir}")
    meta = read_dataset_json(output_dir)
    if "class_frequencies" not in meta:
        raise ValueError(f"{path} has no class_frequencies (not made by medseg-dfl sample-data)")
    return {str(k): float(v) for k, v in meta["class_frequencies"].items()}
