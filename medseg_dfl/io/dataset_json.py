"""The one owner of ``dataset.json`` (MONAI/Decathlon data lists): its name, reading and writing.

Who uses it: :mod:`medseg_dfl.io.pairing` reads the ``"training"``/``"validation"`` lists of a data
folder, :mod:`medseg_dfl.data.preprocess` writes one into its output folder (absolute paths) and
reads the ``"labels"``/``"modality"`` hints of an input folder, :mod:`medseg_dfl.data.synthetic`
writes one beside the sample data, :mod:`medseg_dfl.io.nnunet` reads an nnU-Net v2 one
(``channel_names``, ``labels`` name -> value, ``file_ending``), and :mod:`medseg_dfl.data.datasets` recognises a ``preprocess``
output folder by it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg_dfl.io.atomic import write_json

__all__ = ["DATASET_JSON", "dataset_json_path", "has_dataset_json", "read_dataset_json", "write_dataset_json"]

DATASET_JSON = "dataset.json"


def dataset_json_path(folder: str | Path) -> Path:
    return Path(folder) / DATASET_JSON


def has_dataset_json(folder: str | Path) -> bool:
    return dataset_json_path(folder).is_file()


def read_dataset_json(folder: str | Path) -> dict[str, Any]:
    """The JSON object in ``folder/dataset.json``; ``ValueError`` naming the file when it is not one."""
    path = dataset_json_path(folder)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object (with 'training'/'validation' lists)")
    return data


def write_dataset_json(folder: str | Path, data: dict[str, Any]) -> Path:
    """Write ``folder/dataset.json`` atomically (replacing an earlier one)."""
    return write_json(dataset_json_path(folder), data)
