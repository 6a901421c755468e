"""Shared plumbing of the dataset fetchers: staged output folders, downloads, archives, provenance.

An output folder is built under a hidden sibling name (``.<name>.partial-<pid>-<hex>``) and renamed
into place only when the whole conversion succeeded, so a failed fetch (no network, wrong checksum,
truncated archive, missing folder) leaves no half-written output. Downloads and extracted archives
live in another hidden sibling (``.<name>.work-<pid>-<hex>``) that is always removed.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

from monai.apps.utils import download_url

from medseg_dfl.io.atomic import atomic_folder, scratch_folder, write_text

__all__ = [
    "FetchError",
    "download",
    "extract_archive",
    "source_folder",
    "find_root",
    "seeded_validation",
    "staged_folder",
    "work_folder",
    "write_provenance",
]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


class FetchError(RuntimeError):
    """A download or conversion that failed for a reason outside the code (network, checksum, archive)."""


def staged_folder(out_dir: Path, *, overwrite: bool = False) -> contextlib.AbstractContextManager[Path]:
    """Yield an empty hidden sibling of ``out_dir``; on success it replaces ``out_dir``, else it is removed."""
    return atomic_folder(out_dir, overwrite=overwrite)


def work_folder(out_dir: Path) -> contextlib.AbstractContextManager[Path]:
    """A scratch folder beside ``out_dir`` (same file system) for downloads and extraction; always removed."""
    return scratch_folder(out_dir)


def source_folder(source: Path | None, work: Path, url: str, archive_name: str, *, md5: str | None = None) -> Path:
    """The folder to convert from: ``source`` itself, ``source`` extracted when it is an archive, or the
    archive at ``url`` downloaded (MD5 checked when given) and extracted into ``work``."""
    if source is None:
        return extract_archive(download(url, work / archive_name, md5=md5), work / "extracted")
    if is_archive(source):
        return extract_archive(source, work / "extracted")
    return source


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract a tar/zip archive into ``dest``; a truncated or corrupt one is a one-line ``FetchError``."""
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise FetchError(f"{archive}: corrupt archive (bad CRC in {bad})")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")  # "data": no absolute paths, links out or devices
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise FetchError(f"{archive}: truncated or corrupt archive ({err})") from err
    return dest


def download(url: str, dest: Path, *, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` with MONAI's downloader (MD5 checked when given); one-line errors."""
    monai_logger = logging.getLogger("monai.apps")
    level = monai_logger.level
    monai_logger.setLevel(logging.CRITICAL)  # MONAI logs the failure too; the FetchError is the one line
    try:
        with warnings.catch_warnings():  # a GitHub branch archive has no published hash to check
            warnings.filterwarnings("ignore", message="No hash value provided", category=UserWarning)
            download_url(url, filepath=dest, hash_val=md5, hash_type="md5", progress=False)
    except Exception as err:  # noqa: BLE001 - network, HTTP, checksum and disk errors all end the fetch
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FetchError(f"download of {url} failed ({reason})") from err
    finally:
        monai_logger.setLevel(level)
    return dest


def find_root(base: Path, is_root: Callable[[Path], bool], what: str) -> Path:
    """``base`` or one folder below it (an archive's top folder) that ``is_root``; else FileNotFoundError."""
    if is_root(base):
        return base
    below = [p for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith(".")] if base.is_dir() else []
    found = [p for p in below if is_root(p)]
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(f"{base}: not {what} (nor is any folder directly inside it)")


def write_provenance(out: Path, *, title: str, source: str, licence: str, citation: str, notes: str,
                     licence_file: Path | None = None) -> None:
    """README.md (source, licence, citation, what was converted) and LICENSE beside the data."""
    readme = (f"# {title}\n\nSource: {source}\n\nLicence: {licence}\n\n## Citation\n\n{citation}\n\n"
              f"## Conversion (medseg-dfl datasets fetch)\n\n{notes}\n")
    write_text(out / "README.md", readme)
    if licence_file is not None and licence_file.is_file():
        shutil.copyfile(licence_file, out / "LICENSE")
    else:
        write_text(out / "LICENSE", f"{title} is distributed under {licence}.\nSource: {source}\n")


def seeded_validation(case_ids: list[str], fraction: float = 0.2, seed: int = 0) -> set[str]:
    """A fixed validation subset: ``round(n * fraction)`` ids (at least 1 of >= 2), the same on every machine."""
    ids = sorted(case_ids)
    n_val = min(max(round(len(ids) * fraction), 1), len(ids) - 1) if len(ids) >= 2 else 0
    random.Random(seed).shuffle(ids)
    return set(ids[:n_val])
