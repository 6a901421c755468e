"""The datasets ``medseg-dfl datasets fetch`` knows by name, and the one entry point to fetch them.

Each dataset's converter is its own module (``hippocampus``, ``wbc``, ``bccd``, ``bccd_masks``) with a
``convert(source, staging, progress)`` function; it is imported only when that dataset is fetched,
so listing stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from medseg_dfl.datasets._staging import staged_folder, work_folder
from medseg_dfl.progress import ProgressCallback

__all__ = ["DATASETS", "DatasetInfo", "fetch_dataset", "get_dataset", "list_datasets"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    kind: str  # what the converted folder holds
    source: str  # public home of the data
    licence: str
    citation: str
    module: str  # converter module (imported on fetch)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="hippocampus",
            title="Medical Segmentation Decathlon, Task04 Hippocampus",
            kind="3D MR, 3 classes (background, anterior, posterior); Decathlon layout",
            source="http://medicaldecathlon.com (Task04_Hippocampus.tar via MONAI's DecathlonDataset URL and MD5)",
            licence="CC-BY-SA 4.0",
            citation=(
                "Simpson et al., A large annotated medical image dataset for the development and evaluation "
                "of segmentation algorithms, arXiv:1902.09063 (2019); Antonelli et al., The Medical "
                "Segmentation Decathlon, Nature Communications 13, 4128 (2022)."
            ),
            module="medseg_dfl.datasets.hippocampus",
        ),
        DatasetInfo(
            name="wbc",
            title="segmentation_WBC (Zheng et al. 2018), white blood cells",
            kind="2D RGB, 3 classes (background, cytoplasm, nucleus); images/ + labels/",
            source="https://github.com/zxaoyou/segmentation_WBC",
            licence="GPL-3.0 (the repository's licence)",
            citation=(
                "Zheng X, Wang Y, Wang G, Liu J. Fast and robust segmentation of white blood cell images by "
                "self-supervised learning. Micron 107:55-71 (2018). Dataset 1 courtesy of Jiangxi Tecom "
                "Science Corporation, China."
            ),
            module="medseg_dfl.datasets.wbc",
        ),
        DatasetInfo(
            name="bccd",
            title="BCCD blood cell detection dataset",
            kind="2D RGB smears with VOC boxes (rbc, wbc, platelet); counts.csv + boxes.csv, no masks",
            source="https://github.com/Shenggan/BCCD_Dataset",
            licence="MIT",
            citation="BCCD Dataset, https://github.com/Shenggan/BCCD_Dataset (MIT licence, Shenggan, 2017).",
            module="medseg_dfl.datasets.bccd",
        ),
        DatasetInfo(
            name="bccd-masks",
            title="BCCD blood cell detection dataset",
            kind="2D RGB smears, 4 classes (background, rbc, wbc, platelet) as weak masks derived from the "
                 "boxes; images/ + labels/, shrunk to ~25 px red cells",
            source="https://github.com/Shenggan/BCCD_Dataset",
            licence="MIT",
            citation="BCCD Dataset, https://github.com/Shenggan/BCCD_Dataset (MIT licence, Shenggan, 2017).",
            module="medseg_dfl.datasets.bccd_masks",
        ),
    )
}


def list_datasets() -> list[DatasetInfo]:
    """Every dataset ``fetch_dataset`` knows, by name."""
    return [DATASETS[name] for name in sorted(DATASETS)]


def get_dataset(name: str) -> DatasetInfo:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})") from None


def fetch_dataset(
    name: str,
    out_dir: str | Path,
    *,
    source: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download dataset ``name`` (or read ``source``: a folder or archive in the source's own layout)
    and write it converted to ``out_dir``, with its licence and citation; returns ``out_dir``.

    ``source`` is never modified. Nothing appears at ``out_dir`` unless the whole conversion
    succeeded (``FetchError`` for network/checksum/archive failures, ``FileNotFoundError`` /
    ``ValueError`` for a source that is not the dataset's layout). An existing, non-empty
    ``out_dir`` is replaced only with ``overwrite=True``.
    """
    info = get_dataset(name)
    out_dir = Path(out_dir)
    src = Path(source) if source is not None else None
    if src is not None and not src.exists():
        raise FileNotFoundError(f"--from {src}: not found")
    converter = importlib.import_module(info.module)
    with staged_folder(out_dir, overwrite=overwrite) as staging, work_folder(out_dir) as work:
        converter.convert(info, src, staging, work, progress)
    return out_dir
