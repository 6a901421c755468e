"""Small copies of the shared real datasets (in tmp_path) for the fetch tests; skipped when absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present (the real datasets live in ../shared/datasets beside the repository)")
    return path


def copy_files(src_dir: Path, dst_dir: Path, names: list[str]) -> None:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src_dir / name, dst_dir / name)


def no_leftovers(parent: Path, out_name: str) -> bool:
    """Neither the output folder nor a hidden staging/work sibling of it exists."""
    return not (parent / out_name).exists() and not list(parent.glob(f".{out_name}.*"))
