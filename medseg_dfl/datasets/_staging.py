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
MAX_ARCHIVE_BYTES = 20 * 1024**3  # extracted size refused beyond this (an archive bomb)
MAX_ARCHIVE_FILES = 200_000


class FetchError(RuntimeError):
    """A download or conversion that failed for a reason outside the code (network, checksum, archive)."""


def staged_folder(out_dir: Path, *, overwrite: bool = False) -> contextlib.AbstractContextManager[Path]:
    """Yield an empty hidden sibling of ``out_dir``; on success it replaces ``out_dir``, else it is removed."""
    return atomic_folder(out_dir, overwrite=overwrite)


def work_folder(out_dir: Path) -> contextlib.AbstractContextManager[Path]:
    """A scratch folder beside ``out_dir`` (same file system) for downloads and extraction; always removed."""
    return scratch_folder(out_dir)


def source_folder(source: Path | None, work: Path, url: str, archive_name: str, *, md5: str | None = None,
                  max_bytes: int = MAX_ARCHIVE_BYTES, max_files: int = MAX_ARCHIVE_FILES) -> Path:
    """The folder to convert from: ``source`` itself, ``source`` extracted when it is an archive, or the
    archive at ``url`` downloaded (MD5 checked when given) and extracted into ``work``; an archive
    larger than ``max_bytes`` / ``max_files`` once extracted is refused (see :func:`extract_archive`)."""
    limits = {"max_bytes": max_bytes, "max_files": max_files}
    if source is None:
        return extract_archive(download(url, work / archive_name, md5=md5), work / "extracted", **limits)
    if is_archive(source):
        return extract_archive(source, work / "extracted", **limits)
    return source


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _too_big(archive: Path, what: str, max_bytes: int) -> ValueError:
    return ValueError(f"{archive}: archive {what} more than {max_bytes:,} bytes extracted (limit max_bytes); "
                      "refusing to extract it")


def _check_declared(archive: Path, n_files: int, n_bytes: int, max_bytes: int, max_files: int) -> None:
    if n_files > max_files:
        raise ValueError(f"{archive}: archive has {n_files:,} members, more than the limit of {max_files:,} "
                         "(max_files); refusing to extract it")
    if n_bytes > max_bytes:
        raise _too_big(archive, f"declares {n_bytes:,} bytes,", max_bytes)


def _zip_target(dest: Path, name: str) -> Path | None:
    """Where zip member ``name`` goes under ``dest`` (as ``ZipFile.extract`` would: no absolute paths, no ``..``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return dest.joinpath(*parts) if parts else None


def _extract_zip(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_declared(archive, len(infos), sum(i.file_size for i in infos), max_bytes, max_files)
        bad = zf.testzip()
        if bad is not None:
            raise FetchError(f"{archive}: corrupt archive (bad CRC in {bad})")
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for info in infos:
            target = _zip_target(dest, info.filename)
            if target is None:
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:  # counting copy: stop at the limit
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise _too_big(archive, "holds", max_bytes)
                    out.write(chunk)


def _extract_tar(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        _check_declared(archive, len(members), sum(m.size for m in members if m.isfile()), max_bytes, max_files)
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for member in members:
            if member.isfile():
                written += member.size  # a tar member's data is exactly its size
                if written > max_bytes:
                    raise _too_big(archive, "holds", max_bytes)
            tf.extract(member, dest, filter="data")  # "data": no absolute paths, links out or devices


def extract_archive(archive: Path, dest: Path, *, max_bytes: int = MAX_ARCHIVE_BYTES,
                    max_files: int = MAX_ARCHIVE_FILES) -> Path:
    """Extract a tar/zip archive into ``dest``; a truncated or corrupt one is a one-line ``FetchError``.

    An archive whose members declare more than ``max_bytes`` in all, or number more than ``max_files``,
    is refused (``ValueError`` naming it) before anything is written; extraction also stops with that
    error once the bytes written pass ``max_bytes``. A tar entry that would land outside ``dest`` (or
    link outside it) is a ``FetchError`` saying so.
    """
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest, max_bytes, max_files)
        else:
            _extract_tar(archive, dest, max_bytes, max_files)
    except tarfile.FilterError as err:  # before TarError, of which it is one: not a corrupt archive
        entry = err.tarinfo.name if getattr(err, "tarinfo", None) is not None else "?"
        outside = (tarfile.OutsideDestinationError, tarfile.AbsolutePathError, tarfile.LinkOutsideDestinationError)
        what = "would land outside the folder it is extracted to" if isinstance(err, outside) else "is not allowed"
        raise FetchError(f"{archive}: entry {entry!r} {what} ({err}); refusing to extract it") from err
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


def find_root(base: Path, is_root: Callable[[Path], bool], what: str, shown: str | Path | None = None) -> Path:
    """``base`` or one folder below it (an archive's top folder) that ``is_root``; else
    FileNotFoundError naming ``shown`` (what the user gave: ``--from`` or the download address), not
    the scratch folder an archive was extracted to, which is gone by the time the error is read."""
    if is_root(base):
        return base
    below = [p for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith(".")] if base.is_dir() else []
    found = [p for p in below if is_root(p)]
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(f"{shown or base}: not {what} (nor is any folder directly inside it)")


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
