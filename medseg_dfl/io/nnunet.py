"""nnU-Net v2 raw datasets (``DatasetXXX_Name``): the one place that recognises and reads the layout.

The format, as nnU-Net's ``documentation/dataset_format.md`` describes it::

    DatasetXXX_Name/
        dataset.json    {"channel_names": {"0": "T2", ...}, "labels": {"background": 0, "PZ": 1, ...},
                         "numTraining": N, "file_ending": ".nii.gz"}
        imagesTr/       {CASE}_{XXXX}{file_ending}   (XXXX: the 4-digit channel index, 0000, 0001, ...)
        labelsTr/       {CASE}{file_ending}
        imagesTs/       {CASE}_{XXXX}{file_ending}   (optional)

``labels`` maps a class name to its integer value; the values must be 0..K-1 (background 0), which
gives the class names in order. nnU-Net "regions" (a list of values, ``"whole": [1, 2]``) are refused
in one line. Several channels per case (``_0000``, ``_0001``, ... one file each, in the order of
``channel_names``) make one multi-channel image: a case's image is the tuple of its channel files,
which the readers stack as (C, spatial...) with the geometry of the ``_0000`` file
(:func:`medseg_dfl.io.readers.load_image` refuses, naming the file, channel files whose shape or
geometry differ from it). Predictions for an nnU-Net ``imagesTs``/``imagesTr`` folder are one per
case, named ``{CASE}{file_ending}``, as nnU-Net writes them (:func:`nnunet_case_inputs` lists the
``_0000`` file of each case, :func:`nnunet_channel_files` gives the rest of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg_dfl.io.dataset_json import dataset_json_path, has_dataset_json, read_dataset_json

__all__ = [
    "IMAGE_FOLDERS",
    "NnUNetDataset",
    "is_nnunet_raw",
    "nnunet_case_id",
    "nnunet_case_inputs",
    "nnunet_channel_files",
    "nnunet_images_dataset",
    "nnunet_images_folder",
    "nnunet_root_of",
    "read_nnunet_dataset",
]

IMAGE_FOLDERS = ("imagesTr", "imagesTs")
_CHANNEL_DIGITS = 4


@dataclass(frozen=True)
class NnUNetDataset:
    """What a ``DatasetXXX_Name`` folder holds: training cases ``(case, images, label)`` and test
    cases ``(case, images)``, ``images`` the case's channel files in channel order (``_0000`` first)."""

    root: Path
    channel_names: list[str]
    class_names: list[str]
    file_ending: str
    training: list[tuple[str, tuple[Path, ...], Path]] = field(default_factory=list)
    test: list[tuple[str, tuple[Path, ...]]] = field(default_factory=list)


def _looks_nnunet(data: dict[str, Any]) -> bool:
    return "channel_names" in data and "file_ending" in data


def is_nnunet_raw(folder: str | Path) -> bool:
    """``folder`` has an nnU-Net v2 ``dataset.json`` (``channel_names`` + ``file_ending``)."""
    folder = Path(folder)
    if not folder.is_dir() or not has_dataset_json(folder):
        return False
    try:
        return _looks_nnunet(read_dataset_json(folder))
    except ValueError:
        return False


def nnunet_root_of(path: str | Path) -> Path | None:
    """The nnU-Net raw dataset ``path`` belongs to: the dataset folder itself, one of its
    ``imagesTr``/``imagesTs``/``labelsTr`` folders, or a file in one of them; else None."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if is_nnunet_raw(folder):
        return folder
    if folder.name in (*IMAGE_FOLDERS, "labelsTr") and is_nnunet_raw(folder.parent):
        return folder.parent
    return None


def _channel_names(value: Any, where: Path) -> list[str]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{where}: 'channel_names' must map channel indices to names, e.g. {{\"0\": \"T2\"}}")
    keys = sorted(value, key=lambda k: int(k) if str(k).isdigit() else -1)
    if keys != [str(i) for i in range(len(value))]:
        raise ValueError(f"{where}: 'channel_names' keys must be 0..{len(value) - 1}, got {sorted(value)}")
    return [str(value[k]) for k in keys]


def _class_names(value: Any, where: Path) -> list[str]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{where}: 'labels' must map class names to values, e.g. {{\"background\": 0, \"tumour\": 1}}")
    regions = [name for name, v in value.items() if isinstance(v, (list, tuple))]
    if regions:
        raise ValueError(
            f"{where}: nnU-Net regions ({', '.join(regions)}) are not supported; give each class one integer value"
        )
    bad = [name for name, v in value.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise ValueError(f"{where}: 'labels' values must be integers, got {', '.join(f'{n}={value[n]!r}' for n in bad)}")
    by_value = sorted(value.items(), key=lambda item: item[1])
    if [v for _, v in by_value] != list(range(len(value))):
        raise ValueError(
            f"{where}: 'labels' values must be 0..{len(value) - 1} (background 0), got {sorted(value.values())}"
        )
    return [str(name) for name, _ in by_value]


def nnunet_case_id(path: str | Path, file_ending: str) -> str | None:
    """``CASE`` of a channel file ``CASE_XXXX{file_ending}``; None when the name is not one."""
    name = Path(path).name
    if not name.endswith(file_ending):
        return None
    stem = name[: -len(file_ending)]
    case, sep, channel = stem.rpartition("_")
    if not sep or not case or len(channel) != _CHANNEL_DIGITS or not channel.isdigit():
        return None
    return case


def _channel_index(path: Path, file_ending: str) -> int:
    return int(path.name[: -len(file_ending)].rpartition("_")[2])


def _files(folder: Path, file_ending: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.endswith(file_ending))


def _image_cases(folder: Path, file_ending: str, n_channels: int) -> dict[str, tuple[Path, ...]]:
    """``{case: its channel files, _0000 first}`` of an images folder; errors name files not ``CASE_XXXX{file_ending}``
    and cases without all their channels."""
    cases: dict[str, dict[int, Path]] = {}
    odd = []
    for path in _files(folder, file_ending):
        case = nnunet_case_id(path, file_ending)
        if case is None:
            odd.append(path.name)
            continue
        cases.setdefault(case, {})[_channel_index(path, file_ending)] = path
    if odd:
        raise ValueError(f"{folder}: not named CASE_XXXX{file_ending} (XXXX the channel, 0000...): {', '.join(odd)}")
    wrong = [c for c, chans in cases.items() if sorted(chans) != list(range(n_channels))]
    if wrong:
        listed = ", ".join(f"{c} ({', '.join(f'{i:04d}' for i in sorted(cases[c]))})" for c in sorted(wrong))
        raise ValueError(f"{folder}: cases without exactly the channels 0000..{n_channels - 1:04d}: {listed}")
    return {case: tuple(chans[i] for i in range(n_channels)) for case, chans in sorted(cases.items())}


def read_nnunet_dataset(folder: str | Path, *, cases: bool = True) -> NnUNetDataset:
    """Read ``folder`` (an nnU-Net v2 raw dataset): names, file ending and (with ``cases``) the
    training and test cases. ``ValueError`` in one line for regions, odd names, cases without all
    their channels, and images without a label or labels without an image."""
    root = Path(folder)
    where = dataset_json_path(root)
    data = read_dataset_json(root)
    if not _looks_nnunet(data):
        raise ValueError(f"{where}: not an nnU-Net v2 dataset.json (needs 'channel_names' and 'file_ending')")
    file_ending = data.get("file_ending")
    if not isinstance(file_ending, str) or not file_ending.startswith("."):
        raise ValueError(f"{where}: 'file_ending' must be a file ending such as \".nii.gz\", got {file_ending!r}")
    if "dataset" in data:
        raise ValueError(f"{where}: a 'dataset' file list is not supported; use the imagesTr/labelsTr layout")
    channels = _channel_names(data.get("channel_names"), where)
    classes = _class_names(data.get("labels"), where)
    dataset = NnUNetDataset(root=root, channel_names=channels, class_names=classes, file_ending=file_ending)
    if not cases:
        return dataset
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for needed in (images_dir, labels_dir):
        if not needed.is_dir():
            raise ValueError(f"{root}: nnU-Net dataset without {needed.name}/")
    images = _image_cases(images_dir, file_ending, len(channels))
    labels = {p.name[: -len(file_ending)]: p for p in _files(labels_dir, file_ending)}
    no_label = [images[c][0].name for c in images if c not in labels]
    no_image = [labels[c].name for c in labels if c not in images]
    if no_label or no_image:
        parts = [f"images without a label in labelsTr/: {', '.join(no_label)}"] if no_label else []
        parts += [f"labels without an image in imagesTr/: {', '.join(no_image)}"] if no_image else []
        raise ValueError(f"{root}: {'; '.join(parts)}")
    training = [(c, images[c], labels[c]) for c in images]
    test: list[tuple[str, Path]] = []
    if (root / "imagesTs").is_dir():
        test = list(_image_cases(root / "imagesTs", file_ending, len(channels)).items())
    return NnUNetDataset(root, channels, classes, file_ending, training, test)


def nnunet_images_folder(path: str | Path) -> Path:
    """``path``, or its ``imagesTs/`` when ``path`` is an nnU-Net raw dataset folder (what ``infer``
    predicts for a ``DatasetXXX_Name`` folder)."""
    path = Path(path)
    if path.is_dir() and is_nnunet_raw(path):
        if not (path / "imagesTs").is_dir():
            raise ValueError(f"{path}: nnU-Net dataset without imagesTs/; give the images folder to predict")
        return path / "imagesTs"
    return path


def nnunet_images_dataset(path: Path) -> NnUNetDataset | None:
    """The dataset (names only) when ``path`` is (a file in) an nnU-Net ``imagesTr``/``imagesTs``."""
    folder = path if path.is_dir() else path.parent
    root = nnunet_root_of(folder)
    if root is None or folder.name not in IMAGE_FOLDERS:
        return None
    return read_nnunet_dataset(root, cases=False)


def nnunet_channel_files(path: str | Path) -> tuple[Path, ...]:
    """The channel files (``_0000`` first) of the case whose ``_0000`` file is ``path``, when ``path``
    lies in the ``imagesTr``/``imagesTs`` of a dataset with several channels; else ``(path,)``.
    ``FileNotFoundError`` naming the case's missing channel files."""
    path = Path(path)
    dataset = nnunet_images_dataset(path)
    if dataset is None or len(dataset.channel_names) == 1:
        return (path,)
    case = nnunet_case_id(path, dataset.file_ending)
    if case is None or _channel_index(path, dataset.file_ending) != 0:
        return (path,)
    files = tuple(path.with_name(f"{case}_{i:0{_CHANNEL_DIGITS}d}{dataset.file_ending}")
                  for i in range(len(dataset.channel_names)))  # fmt: skip
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{path.parent}: case {case} has no channel file {', '.join(missing)} "
                                f"({len(files)} channels: {', '.join(dataset.channel_names)})")  # fmt: skip
    return files


def nnunet_case_inputs(folder: str | Path, files: list[Path]) -> list[Path]:
    """``files`` found in ``folder`` with one entry per case: in the ``imagesTr``/``imagesTs`` of a
    dataset with several channels, each case's ``_0000`` file (:func:`nnunet_channel_files` gives
    the others), after checking every case has exactly its channels; elsewhere ``files`` as given."""
    folder = Path(folder)
    dataset = nnunet_images_dataset(folder)
    if dataset is None or len(dataset.channel_names) == 1 or not folder.is_dir():
        return files
    cases = _image_cases(folder, dataset.file_ending, len(dataset.channel_names))
    first = {channels[0].resolve() for channels in cases.values()}
    return [f for f in files if f.resolve() in first]
