"""``hippocampus``: Medical Segmentation Decathlon Task04 (MR, hippocampus head and body/tail).

Without a source, the official ``Task04_Hippocampus.tar`` is downloaded from the URL MONAI's
``DecathlonDataset`` uses and checked against MONAI's MD5. A source is a ``Task04_Hippocampus``
folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``) or its tar. Output: the same Decathlon
layout (files copied unchanged), with a ``dataset.json`` whose ``training`` list holds only the
cases present in the source (a partial copy may list more; their number is recorded under
``conversion``), a fixed ``validation`` list (20 %, seed 0) and the ``test`` images present.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from monai.apps.datasets import DecathlonDataset

from medseg_dfl.datasets._staging import (
    find_root,
    seeded_validation,
    source_folder,
    write_provenance,
)
from medseg_dfl.datasets.registry import DatasetInfo
from medseg_dfl.io.dataset_json import (
    dataset_json_path,
    has_dataset_json,
    read_dataset_json,
    write_dataset_json,
)
from medseg_dfl.progress import ProgressCallback, report

__all__ = ["TASK", "convert"]

TASK = "Task04_Hippocampus"


def _is_task_folder(path: Path) -> bool:
    return has_dataset_json(path) and (path / "imagesTr").is_dir()


def _source_root(source: Path | None, work: Path) -> Path:
    base = source_folder(source, work, DecathlonDataset.resource[TASK], f"{TASK}.tar", md5=DecathlonDataset.md5[TASK])
    return find_root(base, _is_task_folder, f"a {TASK} folder (dataset.json + imagesTr/)",
                     source or DecathlonDataset.resource[TASK])


def _rel(entry: str) -> str:
    return entry[2:] if entry.startswith("./") else entry


def _read_entries(root: Path) -> tuple[dict, list[dict[str, str]], int, list[str]]:
    """dataset.json, its present training pairs, how many listed pairs are missing, present test images."""
    path = dataset_json_path(root)
    meta = read_dataset_json(root)
    listed = meta.get("training")
    if not isinstance(listed, list) or not listed:
        raise ValueError(f"{path}: no 'training' list")
    present = []
    for entry in listed:
        if not (isinstance(entry, dict) and isinstance(entry.get("image"), str) and isinstance(entry.get("label"), str)):
            raise ValueError(f"{path}: each training entry needs 'image' and 'label' paths, got {entry!r}")
        pair = {"image": _rel(entry["image"]), "label": _rel(entry["label"])}
        if (root / pair["image"]).is_file() and (root / pair["label"]).is_file():
            present.append(pair)
    if not present:
        raise FileNotFoundError(f"{path}: none of the {len(listed)} listed training pairs is present under {root}")
    tests = [_rel(t) for t in meta.get("test") or [] if isinstance(t, str) and (root / _rel(t)).is_file()]
    return meta, present, len(listed) - len(present), tests


def _copy(root: Path, out: Path, rel: str) -> None:
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / rel, out / rel)


def convert(info: DatasetInfo, source: Path | None, out: Path, work: Path, progress: ProgressCallback | None) -> None:
    root = _source_root(source, work)
    meta, pairs, missing, tests = _read_entries(root)
    files = [p[k] for p in pairs for k in ("image", "label")] + tests
    for done, rel in enumerate(files, start=1):
        _copy(root, out, rel)
        report(progress, done, len(files), rel)
    val = seeded_validation([p["image"] for p in pairs])
    conversion = {"cases": len(pairs), "listed_but_missing": missing, "test_images": len(tests),
                  "validation_seed": 0}
    write_dataset_json(out, {
        **{k: v for k, v in meta.items() if k not in ("training", "validation", "test")},
        "licence": meta.get("licence", info.licence), "source": info.source,
        "numTraining": len(pairs) - len(val), "numValidation": len(val), "numTest": len(tests),
        "training": [p for p in pairs if p["image"] not in val],
        "validation": [p for p in pairs if p["image"] in val],
        "test": tests,
        "conversion": conversion,
    })
    notes = (f"{len(pairs)} labelled cases copied unchanged ({len(pairs) - len(val)} training, {len(val)} "
             f"validation, seed 0); {missing} listed in the source's dataset.json but not present; "
             f"{len(tests)} test images.")
    write_provenance(out, title=info.title, source=info.source, licence=info.licence, citation=info.citation,
                     notes=notes)
