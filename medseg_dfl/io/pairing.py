"""Which image goes with which label, and which images to predict.

Layouts :func:`discover_pairs` understands, tried in this order under ``root``:

1. ``root/dataset.json`` (MONAI/Decathlon): ``"training"`` + ``"validation"`` lists of
   ``{"image": rel, "label": rel}`` (``"image"`` may list several files: one image of their channels,
   as ``preprocess`` writes a multi-channel nnU-Net case); both lists together are the pairs
   (``"test"`` is ignored).
2. ``root/images/`` + ``root/labels/``: same stem (``.nii.gz`` is one suffix), or a label stem
   ``<stem>_seg``, ``<stem>_label``, ``<stem>_labels``, ``<stem>_mask`` or ``<stem>_masks``.
3. Cellpose style, one folder: ``x.png`` + ``x_masks.png`` (any supported suffixes).

An nnU-Net v2 raw dataset (``DatasetXXX_Name``: ``dataset.json`` with ``channel_names`` and
``file_ending``, ``imagesTr/CASE_0000<ending>`` + ``labelsTr/CASE<ending>``) is read first, by
:mod:`medseg_dfl.io.nnunet`; its case ids are the ``CASE`` part, and a case with several channel
files (``CASE_0000``, ``CASE_0001``...) is one pair whose ``channel_files`` are all of them.

Files without an image suffix (``.txt``, ``.json``, ``.DS_Store``...) and hidden files are ignored
(logged at debug level). Image files left unpaired, or two files with one stem (``x.png`` and
``x.tif``), are a ``ValueError`` that lists them all.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg_dfl.io.dataset_json import DATASET_JSON, has_dataset_json, read_dataset_json
from medseg_dfl.io.names import file_stem
from medseg_dfl.io.nnunet import is_nnunet_raw, read_nnunet_dataset
from medseg_dfl.io.readers import IMAGE_SUFFIXES, file_suffix, is_dicom_dir

__all__ = ["LABEL_STEM_SUFFIXES", "CasePair", "discover_pairs", "find_images", "split_pairs"]

logger = logging.getLogger(__name__)

LABEL_STEM_SUFFIXES = ("_seg", "_label", "_labels", "_mask", "_masks")


@dataclass(frozen=True)
class CasePair:
    """One case. ``image`` is its image file, or the first of ``channel_files`` when the image is
    several single-channel files (an nnU-Net case's ``_0000``, ``_0001``...; empty otherwise)."""

    case_id: str
    image: Path
    label: Path | None
    channel_files: tuple[Path, ...] = ()

    @property
    def image_files(self) -> tuple[Path, ...]:
        """Every file of the image, in channel order (what ``load_image`` takes)."""
        return self.channel_files or (self.image,)

    @property
    def image_source(self) -> str | list[str]:
        """The image as MONAI's ``LoadImaged`` takes it: one file name, or the channel files' names."""
        return [str(p) for p in self.channel_files] if self.channel_files else str(self.image)


def _image_files(folder: Path) -> list[Path]:
    """Image files (and DICOM series folders) directly in ``folder``, sorted; others logged and skipped."""
    found, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if (path.is_file() and file_suffix(path) in IMAGE_SUFFIXES) or is_dicom_dir(path):
            found.append(path)
        else:
            skipped.append(path.name)
    if skipped:
        logger.debug("%s: ignoring non-image entries: %s", folder, ", ".join(skipped))
    return found


def _by_stem(paths: Iterable[Path], where: Path) -> dict[str, Path]:
    stems: dict[str, list[Path]] = {}
    for path in paths:
        stems.setdefault(file_stem(path), []).append(path)
    duplicates = {s: ps for s, ps in stems.items() if len(ps) > 1}
    if duplicates:
        listed = "; ".join(", ".join(p.name for p in ps) for ps in duplicates.values())
        raise ValueError(f"{where}: several files share a stem (keep one of each): {listed}")
    return {s: ps[0] for s, ps in stems.items()}


def _unpaired_error(where: Path, images: Sequence[Path], labels: Sequence[Path]) -> ValueError:
    parts = []
    if images:
        parts.append(f"images without a label: {', '.join(str(p) for p in images)}")
    if labels:
        parts.append(f"labels without an image: {', '.join(str(p) for p in labels)}")
    return ValueError(f"{where}: unpaired files; {'; '.join(parts)}")


def _base_stem(label_stem: str, image_stems: set[str]) -> str | None:
    if label_stem in image_stems:
        return label_stem
    for suffix in LABEL_STEM_SUFFIXES:
        if label_stem.endswith(suffix) and label_stem[: -len(suffix)] in image_stems:
            return label_stem[: -len(suffix)]
    return None


def _match(images: dict[str, Path], labels: dict[str, Path], where: Path) -> list[CasePair]:
    matched: dict[str, list[Path]] = {}
    orphan_labels = []
    for stem, label in labels.items():
        base = _base_stem(stem, set(images))
        if base is None:
            orphan_labels.append(label)
        else:
            matched.setdefault(base, []).append(label)
    duplicates = [ls for ls in matched.values() if len(ls) > 1]
    if duplicates:
        listed = "; ".join(", ".join(p.name for p in ls) for ls in duplicates)
        raise ValueError(f"{where}: several labels for one image: {listed}")
    orphan_images = [path for stem, path in images.items() if stem not in matched]
    if orphan_images or orphan_labels:
        raise _unpaired_error(where, orphan_images, orphan_labels)
    return [CasePair(stem, images[stem], matched[stem][0]) for stem in sorted(images)]


def _pairs_from_folders(root: Path) -> list[CasePair]:
    labels_dir = root / "labels"
    if not labels_dir.is_dir():
        raise ValueError(f"{root}: has images/ but no labels/ folder")
    images = _by_stem(_image_files(root / "images"), root / "images")
    labels = _by_stem(_image_files(labels_dir), labels_dir)
    return _match(images, labels, root)


def _pairs_cellpose(root: Path) -> list[CasePair]:
    files = _image_files(root)
    masks = [p for p in files if file_stem(p).endswith("_masks")]
    images = _by_stem([p for p in files if p not in masks], root)
    masks_by_base = {stem[: -len("_masks")]: path for stem, path in _by_stem(masks, root).items()}
    orphan_masks = [path for base, path in masks_by_base.items() if base not in images]
    orphan_images = [path for stem, path in images.items() if stem not in masks_by_base]
    if orphan_images or orphan_masks:
        raise _unpaired_error(root, orphan_images, orphan_masks)
    return [CasePair(stem, images[stem], masks_by_base[stem]) for stem in sorted(images)]


def _allowed_folders(root: Path, data: dict) -> list[Path]:
    """Where a dataset.json's entries may lie: its own folder; for a ``preprocess`` output (which
    lists absolute paths of its input) the folder its ``"source"`` names; and the sibling folders it
    declares it draws from (``"include_folders"``: relative paths, e.g. the demo sample listing the
    synthetic smears beside it). Anything else is refused."""
    folders, source = [root], data.get("source")
    if isinstance(source, str) and Path(source).is_absolute() and Path(source).parent != Path(source):  # never "/"
        folders.append(Path(source))
    included = data.get("include_folders") or []
    if not isinstance(included, list) or not all(isinstance(f, str) and f and not Path(f).is_absolute()
                                                 for f in included):  # fmt: skip
        raise ValueError(f"{root / DATASET_JSON}: 'include_folders' must be a list of relative folder paths, "
                         f"got {included!r}")  # fmt: skip
    folders = [Path(os.path.normpath(os.path.abspath(folder))) for folder in [*folders, *(root / f for f in included)]]
    return [folder for folder in folders if folder.parent != folder]  # the filesystem root admits nothing


def _inside(root: Path, entry: str, where: str, folders: Sequence[Path]) -> Path:
    """``root / entry``; ``ValueError`` when it lies outside ``folders`` (an absolute path elsewhere, or
    ``..`` leading out): a dataset.json lists files of its own data set, never others'."""
    path = Path(os.path.normpath(os.path.abspath(root / entry)))
    if "\0" in entry or not any(path.is_relative_to(folder) for folder in folders):
        raise ValueError(f"{where}: entry {entry!r} lies outside the data folder {root}; entries must be "
                         "paths relative to it")  # fmt: skip
    return root / entry


def _entry_paths(entry: object, root: Path, where: str, folders: Sequence[Path]) -> tuple[list[Path], Path | None]:
    """(image files, label) of one entry: ``"image"`` is one path or a list of channel files."""
    if isinstance(entry, str):
        return [_inside(root, entry, where, folders)], None
    image = entry.get("image") if isinstance(entry, dict) else None
    images = [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise ValueError(f"{where}: each entry needs an 'image' path (one file, or a list of channel files), "
                         f"got {entry!r}")  # fmt: skip
    label = entry.get("label")
    if label is not None and not isinstance(label, str):
        raise ValueError(f"{where}: 'label' must be one relative path, got {label!r}")
    return [_inside(root, i, where, folders) for i in images], _inside(root, label, where, folders) if label else None


def _pairs_from_dataset_json(root: Path) -> list[CasePair]:
    data = read_dataset_json(root)
    where = str(root / DATASET_JSON)
    entries = list(data.get("training") or []) + list(data.get("validation") or [])
    if not entries:
        raise ValueError(f"{where}: no 'training' or 'validation' entries")
    pairs, missing, unlabelled = [], [], []
    folders = _allowed_folders(root, data)
    for entry in entries:
        images, label = _entry_paths(entry, root, where, folders)
        missing += [str(p) for p in (*images, label) if p is not None and not p.exists()]
        if label is None:
            unlabelled.append(str(images[0]))
        pairs.append(CasePair(file_stem(images[0]), images[0], label, tuple(images) if len(images) > 1 else ()))
    if missing:
        raise FileNotFoundError(f"{where}: listed files not found: {', '.join(missing)}")
    if unlabelled:
        raise ValueError(f"{where}: training/validation entries without a label: {', '.join(unlabelled)}")
    _by_stem([p.image for p in pairs], root / DATASET_JSON)  # duplicate case ids are an error
    return pairs


def discover_pairs(root: str | Path) -> list[CasePair]:
    """Image/label pairs under ``root`` (see the module docstring for the layouts and errors)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if is_nnunet_raw(root):
        pairs = [CasePair(case, images[0], label, images if len(images) > 1 else ())
                 for case, images, label in read_nnunet_dataset(root).training]
    elif has_dataset_json(root):
        pairs = _pairs_from_dataset_json(root)
    elif (root / "images").is_dir():
        pairs = _pairs_from_folders(root)
    else:
        pairs = _pairs_cellpose(root)
    if not pairs:
        raise ValueError(
            f"{root}: no image/label pairs found (expected dataset.json, images/ + labels/, or x.png + x_masks.png)"
        )
    return pairs


def _validation_images(root: Path) -> set[Path] | None:
    if not has_dataset_json(root):
        return None
    data = read_dataset_json(root)
    entries, folders = data.get("validation") or [], _allowed_folders(root, data)
    where = str(root / DATASET_JSON)
    return {_entry_paths(e, root, where, folders)[0][0].resolve() for e in entries} or None


def split_pairs(
    root: str | Path, pairs: Sequence[CasePair], val_fraction: float, seed: int
) -> tuple[list[CasePair], list[CasePair]]:
    """(train, val): the dataset.json ``"validation"`` list when there is one, else a seeded split.

    The seeded split takes ``round(len * val_fraction)`` cases, at least 1 when ``val_fraction > 0``
    and there are >= 2 pairs, never all of them; it depends only on ``seed`` and the case ids.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    listed = _validation_images(Path(root))
    if listed is not None:
        val = [p for p in pairs if p.image.resolve() in listed]
        return [p for p in pairs if p.image.resolve() not in listed], val
    n_val = round(len(pairs) * val_fraction)
    if val_fraction > 0 and len(pairs) >= 2:
        n_val = min(max(n_val, 1), len(pairs) - 1)
    ids = sorted(p.case_id for p in pairs)
    random.Random(seed).shuffle(ids)
    val_ids = set(ids[:n_val])
    return [p for p in pairs if p.case_id not in val_ids], [p for p in pairs if p.case_id in val_ids]


def find_images(input: str | Path, recursive: bool = False) -> list[Path]:
    """Images to predict: ``input`` itself (a file or DICOM series folder) or the image files in a folder.

    Sorted; hidden files and folders are skipped; ``recursive`` also searches sub-folders.
    ``FileNotFoundError`` for a missing path, ``ValueError`` for an unsupported file or no images.
    """
    path = Path(input)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_file():
        if file_suffix(path) not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: not a supported image file (supported: {', '.join(IMAGE_SUFFIXES)})")
        return [path]
    if is_dicom_dir(path):
        return [path]
    found = _image_files(path) if not recursive else _walk_images(path, set())
    if not found:
        raise ValueError(f"{path}: no image files found (supported: {', '.join(IMAGE_SUFFIXES)})")
    return sorted(found)


def _walk_images(folder: Path, seen: set[Path]) -> list[Path]:
    """Images in ``folder`` and its sub-folders, each real folder visited once: a symbolic link back
    to a folder already seen (``loop -> .``) is not followed again."""
    real = folder.resolve()
    if real in seen:
        return []
    seen.add(real)
    found = _image_files(folder)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_dicom_dir(sub):
            found += _walk_images(sub, seen)
    return found
