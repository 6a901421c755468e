"""The one owner of atomic file writes (and of cleaning up after interrupted ones).

Every file the project writes goes through here: it is written under a hidden temporary name in
the target folder (unique per process and call: ``.<stem>.tmp-<pid>-<hex><suffix>``), flushed
and fsynced, then renamed into place with ``os.replace``. A crash leaves either the old file or
the new one, never half of one; the temporary files a killed process leaves behind are removed by
:func:`remove_stale_temps`, which every re-run or resumed command calls on its output folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "TEMP_MARKER",
    "WRITE_ERRNOS",
    "atomic_folder",
    "atomic_path",
    "describe_os_error",
    "is_write_error",
    "os_error_reason",
    "process_alive",
    "remove_stale_temps",
    "scratch_folder",
    "save_figure",
    "torch_save",
    "write_bytes",
    "write_json",
    "write_text",
]

TEMP_MARKER = ".tmp-"
# .<stem>.tmp-<pid>-<8 hex><suffix>
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}(\.[^/]*)?$")
# Names of versions before this module (checkpoints, metrics.csv: .<name>.<pid>.tmp; curves:
# .<stem>.<pid>.tmp.png), so a run folder made by them is repaired on --resume too.
_LEGACY_TEMP_RE = re.compile(r"^\..+\.(\d+)\.tmp(\.png)?$")
_MULTI_SUFFIXES = (".nii.gz", ".tar.gz")

# OS errors that are the machine's state (full disk, no permission, read-only), not a bug: the one
# table. The writers here, infer's output checks and the CLI's one red line all read it.
WRITE_ERROR_REASONS: dict[int, str] = {
    errno.ENOSPC: "no space left on device",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EDQUOT: "disk quota exceeded",
}
WRITE_ERRNOS = frozenset(WRITE_ERROR_REASONS)


def _split_suffix(name: str) -> tuple[str, str]:
    for multi in _MULTI_SUFFIXES:
        if name.lower().endswith(multi):
            return name[: -len(multi)], name[-len(multi) :]
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext) if dot and stem else (name, "")


def temp_name_for(out_path: Path) -> Path:
    stem, suffix = _split_suffix(out_path.name)
    return out_path.with_name(f".{stem}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def os_error_reason(err: OSError) -> str:
    """The reason in a few words: ``no space left on device``, ``permission denied``, ...."""
    return WRITE_ERROR_REASONS.get(err.errno or -1, err.strerror or str(err))


def describe_os_error(err: OSError, path: str | Path) -> str:
    """One line naming ``path`` and the reason (no space left, permission denied, ...)."""
    return f"{path}: cannot write ({os_error_reason(err)})"


def is_write_error(err: BaseException) -> OSError | None:
    """The write ``OSError`` (full disk, permission denied, ...) in ``err``'s chain, if any."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        if isinstance(current, OSError) and current.errno in WRITE_ERRNOS:
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(out_path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``out_path`` (same suffix); rename it into place on success.

    On an exception the temporary file is removed and ``out_path`` is untouched. An existing
    ``out_path`` raises ``FileExistsError`` unless ``overwrite=True``. An ``OSError`` (full disk,
    permission denied) is re-raised as ``OSError`` whose message names the path and the reason.
    """
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path}: already exists (pass overwrite=True to replace it)")
    tmp = temp_name_for(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{out_path}: nothing was written to the temporary file {tmp.name}")
        _fsync(tmp)
        os.replace(tmp, out_path)
    except OSError as err:
        if isinstance(err, (FileExistsError, FileNotFoundError)) or err.errno not in WRITE_ERRNOS:
            raise
        raise OSError(err.errno, describe_os_error(err, out_path)) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)



def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: str | Path, data: Any, *, overwrite: bool = True, indent: int = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent) + "\n", overwrite=overwrite)


def torch_save(obj: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    import torch  # torch is heavy and only some writers need it

    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_figure(figure: Any, path: str | Path, *, overwrite: bool = True, **savefig_kwargs: Any) -> Path:
    """``figure.savefig`` atomically; the format comes from ``path``'s suffix."""
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, **savefig_kwargs)
    return path


def remove_stale_temps(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Remove temporary files left in ``folder`` by killed writers (not those of live processes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    for path in candidates:
        match = _TEMP_RE.match(path.name) or _LEGACY_TEMP_RE.match(path.name)
        if not match or not path.is_file():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and process_alive(pid):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_FOLDER_SIBLING_RE = re.compile(r"^\.(?P<name>.+)\.(?:partial|old|work)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _folder_sibling(out_dir: Path, kind: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _remove_stale_folder_siblings(out_dir: Path) -> None:
    """Partial / old / scratch folders of ``out_dir`` left by killed writers (not those of live processes)."""
    for path in out_dir.parent.glob(f".{out_dir.name}.*"):
        match = _FOLDER_SIBLING_RE.match(path.name)
        if match and match["name"] == out_dir.name and path.is_dir() and not process_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of ``out_dir``; on success it replaces ``out_dir``.

    The folder analogue of :func:`atomic_path`: a failure leaves ``out_dir`` as it was and no
    partial folder behind. A non-empty ``out_dir`` raises ``FileExistsError`` unless ``overwrite``;
    the old folder is kept until the new one is in place. A symbolic link ``out_dir`` is refused
    (``ValueError``) before anything is done.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink():  # replacing it would swap the link for a real folder and orphan the target
        raise ValueError(f"OUTPUT {out_dir} is a symbolic link (to {os.readlink(out_dir)}); give its target")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists and is not empty (pass overwrite=True / --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_folder_siblings(out_dir)
    staging = _folder_sibling(out_dir, "partial")
    staging.mkdir()
    try:
        yield staging
        old = None
        if out_dir.exists():
            old = _folder_sibling(out_dir, "old")
            os.replace(out_dir, old)
        try:
            os.replace(staging, out_dir)
        except OSError:
            if old is not None:
                os.replace(old, out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def scratch_folder(out_dir: str | Path) -> Iterator[Path]:
    """A hidden scratch folder beside ``out_dir`` (same file system: downloads, extraction); always removed.

    A killed process's scratch folder is removed by the next :func:`atomic_folder` of ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = _folder_sibling(out_dir, "work")
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
