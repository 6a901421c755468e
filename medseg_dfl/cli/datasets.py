"""`medseg-dfl datasets list | fetch NAME OUT [--from PATH]`: public datasets by name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import fail, user_errors

app = typer.Typer(
    help="Public datasets by name: list them, or fetch one (download, or --from a local copy) and convert it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("list")
@user_errors
def list_command() -> None:
    """The datasets `fetch` knows: name, what they hold, source and licence."""
    from rich.console import Console
    from rich.table import Table

    from medseg_dfl.datasets import list_datasets

    table = Table(title="datasets (medseg-dfl datasets fetch NAME OUT [--from PATH])")
    for column in ("name", "content", "source", "licence"):
        table.add_column(column, overflow="fold")
    for info in list_datasets():
        table.add_row(info.name, info.kind, info.source, info.licence)
    Console().print(table)


def _summary(out: Path) -> str:
    """One line from the converted dataset.json: cases per split and class shares."""
    from medseg_dfl.io.dataset_json import read_dataset_json

    try:
        meta = read_dataset_json(out)
    except ValueError:
        return ""
    parts = [f"{key[3:].lower()} {meta[key]}" for key in ("numTraining", "numValidation", "numTest", "numImages")
             if key in meta]
    conversion = meta.get("conversion")
    if isinstance(conversion, dict):
        parts += [f"{key.replace('_', ' ')} {value}" for key, value in conversion.items()]
    return "; ".join(parts)


@app.command("fetch")
@user_errors
def fetch_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Dataset name (see `medseg-dfl datasets list`).")],
    output_dir: Annotated[Path, typer.Argument(metavar="OUTPUT_DIR", help="Folder to create with the converted dataset.")],
    source: Annotated[
        Path | None,
        typer.Option("--from", help="A local copy in the source's own layout (folder or .tar/.zip) instead of "
                                    "downloading; never modified."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing, non-empty OUTPUT_DIR.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download dataset NAME (or read --from) and convert it into OUTPUT_DIR.

    The output is in a layout this project reads, with the dataset's licence and citation.
    Nothing is written on failure.
    """
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medseg_dfl.datasets import FetchError, fetch_dataset

    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"{name}: converting", total=None)
        try:
            out = fetch_dataset(name, output_dir, source=source, overwrite=overwrite,
                                progress=lambda done, total, _msg: bar.update(task, completed=done, total=total))
        except FetchError as err:
            fail(str(err).replace("[", r"\["))
    console = Console()
    console.print(f"{name}: wrote {out} in {time.perf_counter() - start:.0f} s ({_summary(out)})", highlight=False,
                  markup=False, soft_wrap=True)
    console.print(f"licence and citation: {out / 'README.md'}, {out / 'LICENSE'}", highlight=False, markup=False)
