"""Shared CLI plumbing: turn known errors into one red line and a non-zero exit."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)

# Errors a user can cause (bad file, bad flag, bad config): one line, exit 1. Anything else is a bug
# and keeps its traceback.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` as one red line and exit with ``code``."""
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(func: F) -> F:
    """Decorator for command functions: known errors become one red line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KNOWN_ERRORS as err:
            fail(str(err).replace("[", r"\["))

    return wrapper  # type: ignore[return-value]
