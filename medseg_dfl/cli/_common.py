"""Shared CLI plumbing: known errors become one red line and a non-zero exit; safe printing.

Kept light (typer and rich only): every command imports this before it checks its arguments, and
those checks must answer before torch or MONAI is imported.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# Errors a user can cause (bad file, bad flag, bad config, data that makes the loss non-finite):
# one line, exit 1. Anything else is a bug and keeps its traceback.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, FloatingPointError,
)  # fmt: skip

# Shared help texts: train and infer take the same --device values.
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N."
# --max-voxels of the commands that read images a user hands them (infer, count); the limit is
# medseg_dfl.io.limits.DEFAULT_MAX_VOXELS, not imported here to keep --help fast.
MaxVoxelsOption = Annotated[
    int,
    typer.Option("--max-voxels", min=1, metavar="N",
                 help="Refuse inputs whose header declares more voxels x channels (default 2**30; "
                      "docs/input_limits.md)."),
]
SET_HELP = "Override a config key, e.g. --set train.epochs=1 --set loss.name=ce (repeatable)."


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name, say) shown as escapes, so a
    message stays one line and a name cannot forge another."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` (plain text: never read as markup) as one red line and exit with ``code``."""
    err_console.print(f"[bold red]error:[/bold red] {escape(one_line(message))}", markup=True)
    raise typer.Exit(code)


def print_bad_files(bad: Iterable[tuple[Path, str]], title: str | None = None) -> None:
    """One plain line per bad file: ``  <file>: <reason>``."""
    if title:
        err_console.print(title, markup=False)
    for path, reason in bad:
        err_console.print(one_line(f"  {path}: {reason}"), markup=False)


def os_error_line(err: OSError) -> str | None:
    """``<path>: <reason>`` for a full disk, a folder without permission, ... (the machine's state,
    not a bug); None for any other ``OSError``.

    The errno table is ``medseg_dfl.io.atomic``'s (``WRITE_ERRNOS``), imported here and not at the
    top: the ``io`` package loads MONAI, and this module must stay light for the argument checks.
    Only an ``OSError`` pays for the import (usually after the command has loaded MONAI anyway).
    """
    from medseg_dfl.io.atomic import WRITE_ERRNOS, os_error_reason

    if err.errno not in WRITE_ERRNOS:
        return None
    reason = os_error_reason(err)
    if err.filename is not None:
        return f"{err.filename}: {reason}"
    text = err.strerror if isinstance(err.strerror, str) and err.strerror else str(err)
    return text if reason in text else f"{text} ({reason})"


def user_errors(func: F) -> F:
    """Decorator for command functions: known errors become one red line and exit code 1.

    An error with a ``bad`` list (files that failed validation) prints one line per file first.
    Warnings of the libraries underneath (MONAI, PyTorch) are not shown: what a user needs to
    know reaches them as an error or in the summary.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return func(*args, **kwargs)
        except KNOWN_ERRORS as err:
            bad = getattr(err, "bad", None)
            if bad:
                print_bad_files(bad, f"bad files ({len(bad)}):")
                fail(getattr(err, "summary", None) or str(err))
            fail(str(err))
        except OSError as err:
            line = os_error_line(err)
            if line is None:
                raise
            fail(line)

    return wrapper  # type: ignore[return-value]


def check_exists(path: Path, what: str, *, folder: bool | None = None) -> None:
    """Fast argument check, before any heavy import: ``FileNotFoundError`` naming ``path``."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if folder is True and not path.is_dir():
        raise NotADirectoryError(f"{what} is not a folder: {path}")
    if folder is False and path.is_dir():
        raise IsADirectoryError(f"{what} is a folder, expected a file: {path}")


def check_output_folder(path: Path, what: str = "output folder") -> None:
    """``NotADirectoryError`` when ``path`` exists and is not a folder (checked before heavy imports)."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} exists and is not a folder: {path}")


def warn_unusual_scales(console: Console, unusual: tuple[float, list[str]] | None, tolerance: float,
                        shown: int = 5) -> None:  # fmt: skip
    """One yellow line naming the images whose estimated red-cell size is far from the others'
    (``cells.scale.unusual_estimates``), with the flag that fixes it for a one-microscope folder."""
    if not unusual or not unusual[1]:
        return
    median, names = unusual
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    console.print(f"[yellow]check the scale of[/yellow] {escape(listed)}: red cells estimated more than "
                  f"{100 * tolerance:.0f} % from the median {median:.1f} px (granules or debris can mislead the estimate); if the "
                  f"images come from one microscope, pass --cell-diameter {median:.0f}")  # fmt: skip
