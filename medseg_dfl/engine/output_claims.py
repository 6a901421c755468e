"""Sharing one output folder between concurrent ``infer`` runs (and torchrun ranks), and checking
that the folder is usable before any work is done.

Before a run segments an input it *claims* the input's mask: it creates ``.<mask name>.claim``
beside the mask with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file systems), holding
``<host> <pid>``. A second run that finds the claim leaves that input to its owner and reports it
as done elsewhere, so no input is segmented twice and each run's counts are its own. The claim is
removed when the input is finished (or failed). A claim left by a killed process on this host
(its pid is gone) is stale and taken over (by one run only); one from another host is respected.

A whole folder that only one run may write (``train``'s run folder) is claimed the same way
(:func:`exclusive_folder`: ``.<folder name>.claim`` beside it); a second run is refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medseg_dfl.io.atomic import WRITE_ERRNOS, describe_os_error

__all__ = ["CLAIM_SUFFIX", "check_writable_folder", "claim_output", "claim_path", "exclusive_folder"]

CLAIM_SUFFIX = ".claim"


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and write (and remove) a probe file in it.

    ``OSError`` naming the folder and the reason (permission denied, no space left, read-only)
    when it cannot be used; ``NotADirectoryError`` when it is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output folder exists and is not a folder: {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medseg-write-probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        raise OSError(err.errno, describe_os_error(err, folder)) from err


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{CLAIM_SUFFIX}")


def _owner_is_gone(claim: Path) -> bool:
    try:
        host, pid = claim.read_text().split()
        pid_number = int(pid)
    except (OSError, ValueError):
        return False  # being written right now, or not ours to judge: respect it
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _try_create(claim: Path) -> bool:
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def _take_over(claim: Path) -> bool:
    """Replace a stale claim by ours. One process at a time (``.takeover`` is itself an exclusive
    file), and only if the claim still names the same dead owner, so two runs finding the same
    stale claim never both own it."""
    if not _owner_is_gone(claim):
        return False
    stale = claim.read_text() if claim.exists() else ""
    lock = claim.with_name(claim.name + ".takeover")
    if not _try_create(lock):
        if not _owner_is_gone(lock):
            return False  # another run is taking it over
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        if not _try_create(lock):
            return False
    try:
        current = claim.read_text() if claim.exists() else None
        if current not in (stale, None):
            return False  # someone else's fresh claim
        with contextlib.suppress(FileNotFoundError):
            claim.unlink()
        return _try_create(claim)
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


@contextlib.contextmanager
def claim_output(output: Path) -> Iterator[bool]:
    """Claim ``output`` for this process: yields True when the claim is ours (and removes it on
    exit), False when another live run holds it."""
    claim = claim_path(Path(output))
    claim.parent.mkdir(parents=True, exist_ok=True)
    ours = _try_create(claim) or _take_over(claim)
    try:
        yield ours
    finally:
        if ours:
            with contextlib.suppress(OSError):
                claim.unlink()


@contextlib.contextmanager
def exclusive_folder(folder: Path, what: str = "run") -> Iterator[None]:
    """Hold ``folder`` for this process (see module docstring); ``FileExistsError`` naming the
    holder when another live process holds it. A killed holder's claim is taken over."""
    folder = Path(os.path.abspath(folder))
    with claim_output(folder) as ours:
        if not ours:
            try:
                holder = " ".join(claim_path(folder).read_text().split()) or "unknown"
            except OSError:
                holder = "unknown"
            raise FileExistsError(f"{folder}: another {what} is writing to it (host and pid {holder}); wait for it "
                                  "to finish or choose another output folder")  # fmt: skip
        yield
