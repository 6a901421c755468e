"""io/atomic.py: one atomic writer for every kind of file, and cleanup of what killed writers leave."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from medseg_dfl.io.atomic import (
    atomic_folder,
    atomic_path,
    remove_stale_temps,
    save_figure,
    torch_save,
    write_bytes,
    write_json,
    write_text,
)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stale_temps(folder: Path, pid: int) -> list[Path]:
    """Temporary files as a writer with ``pid`` would leave them: today's names and the old schemes."""
    names = [f".last.tmp-{pid}-0123abcd.pt", f".best.tmp-{pid}-89abcdef.pt", f".img_03.tmp-{pid}-deadbeef.png",
             f".last.pt.{pid}.tmp", f".curves.{pid}.tmp.png"]  # fmt: skip
    paths = [folder / n for n in names]
    for path in paths:
        path.write_bytes(b"half")
    return paths


def test_every_writer_leaves_only_the_target(tmp_path):
    write_text(tmp_path / "a.txt", "héllo")
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    write_json(tmp_path / "c.json", {"x": [1, 2]})
    torch_save({"w": torch.arange(3)}, tmp_path / "d.pt")
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    save_figure(fig, tmp_path / "e.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json", "d.pt", "e.png"]
    assert (tmp_path / "a.txt").read_text() == "héllo"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert torch.load(tmp_path / "d.pt", weights_only=True)["w"].tolist() == [0, 1, 2]
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_temp_names_are_unique_per_call_and_carry_the_pid(tmp_path):
    names = []
    for _ in range(2):
        with atomic_path(tmp_path / "x.nii.gz") as tmp:
            names.append(tmp.name)
            tmp.write_bytes(b"1")
    assert names[0] != names[1]
    assert all(n.startswith(f".x.tmp-{os.getpid()}-") and n.endswith(".nii.gz") for n in names)


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(FileExistsError):
        write_text(target, "new", overwrite=False)


def test_stale_temps_of_dead_writers_go_those_of_live_writers_stay(tmp_path):
    dead = stale_temps(tmp_path, dead_pid())
    live = stale_temps(tmp_path, os.getppid())  # our parent is alive
    (tmp_path / "sub").mkdir()
    nested = stale_temps(tmp_path / "sub", dead_pid())
    user_files = [tmp_path / ".hidden", tmp_path / "last.pt", tmp_path / ".x.tmp"]
    for path in user_files:
        path.write_bytes(b"mine")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(dead)
    assert all(p.exists() for p in live + nested + user_files)
    assert sorted(remove_stale_temps(tmp_path, recursive=True)) == sorted(nested)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_atomic_folder_replaces_only_on_success_and_cleans_dead_partials(tmp_path):
    out = tmp_path / "out"
    with atomic_folder(out) as staging:
        (staging / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(FileExistsError, match="not empty"):
        with atomic_folder(out):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_folder(out, overwrite=True) as staging:
            (staging / "a.txt").write_text("second")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"  # a failure leaves the old folder as it was
    dead = tmp_path / ".out.partial-999999-0123abcd"
    dead.mkdir()
    with atomic_folder(out, overwrite=True) as staging:
        (staging / "b.txt").write_text("third")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial, old or dead sibling left
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_write_errnos_and_their_reasons_are_one_table_read_by_the_cli_and_infer():
    from medseg_dfl.cli._common import os_error_line
    from medseg_dfl.io.atomic import WRITE_ERRNOS, describe_os_error, is_write_error, os_error_reason

    assert WRITE_ERRNOS == {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT}
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/a.png")
    assert os_error_reason(full) == "no space left on device"
    assert describe_os_error(full, "/data/out") == "/data/out: cannot write (no space left on device)"
    assert os_error_line(full) == "/data/out/a.png: no space left on device"
    assert os_error_line(OSError(errno.EROFS, "Read-only file system")) == "Read-only file system (read-only file system)"
    assert os_error_line(OSError(errno.EIO, "Input/output error")) is None  # a bug or a broken disk: traceback
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "/x")
        except OSError as err:
            raise RuntimeError("wrapped") from err
    except RuntimeError as wrapped:
        assert is_write_error(wrapped).errno == errno.EACCES
    assert is_write_error(OSError(errno.EIO, "Input/output error")) is None
    # nobody else keeps a copy of the table
    package = Path(__file__).resolve().parents[2] / "medseg_dfl"
    holders = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if "errno.ENOSPC" in p.read_text())
    assert holders == ["io/atomic.py"]
