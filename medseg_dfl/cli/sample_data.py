"""`medseg-dfl sample-data`: write synthetic blood smears or CT-like volumes (deterministic), or a small
BCCD sample with weak masks from a copy of BCCD (``--kind bccd --from BCCD_Dataset``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import check_output_folder, user_errors

DEFAULT_COUNT = {"blood-smear": 30, "volume": 8, "bccd": 20}


class Kind(str, Enum):
    blood_smear = "blood-smear"
    volume = "volume"
    bccd = "bccd"


def parse_size(text: str | None) -> int | tuple[int, ...] | None:
    """``"256"`` -> 256, ``"64,64,48"`` (or ``64x64x48``) -> (64, 64, 48); None stays None."""
    if text is None:
        return None
    parts = [p for p in text.lower().replace("x", ",").split(",") if p.strip()]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--size must be integers like 256 or 64,64,48, got {text!r}") from None
    if not sizes:
        raise ValueError(f"--size must be integers like 256 or 64,64,48, got {text!r}")
    return sizes[0] if len(sizes) == 1 else sizes


@user_errors
def command(
    output_dir: Annotated[
        Path, typer.Argument(metavar="OUTPUT_DIR", help="Folder to create (gets images/, labels/, dataset.json).")
    ],
    kind: Annotated[Kind, typer.Option("--kind", help="What to generate.")] = Kind.blood_smear,
    count: Annotated[
        int | None, typer.Option("--count", help="Number of samples (default: 30 smears, 8 volumes).")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option("--size", help="Smear side length (default 256) or volume X,Y,Z / one cube size (default 64,64,48)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share listed as validation.")] = 0.2,
    variety: Annotated[
        bool,
        typer.Option("--variety", help="Smears: monocytes, platelet clumps, more blur, red cells 20-32 px across."),
    ] = False,
    instances: Annotated[
        bool,
        typer.Option("--instances", help="Smears: also write instances/<stem>.png (16-bit cell ids) and cells.csv."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing data set.")] = False,
    source: Annotated[
        Path | None,
        typer.Option("--from", help="bccd: a copy of BCCD (JPEGImages/, Annotations/, ImageSets/, LICENSE)."),
    ] = None,
    also: Annotated[
        Path | None,
        typer.Option("--with", help="bccd: a data set folder whose dataset.json lists are merged in (relative paths)."),
    ] = None,
    boxed_only: Annotated[
        bool,
        typer.Option("--boxed-platelets-only", help="bccd: label only boxed platelets (not unboxed stained blobs)."),
    ] = False,
) -> None:
    """Write synthetic sample data, or a small sample of real BCCD smears with weak masks.

    Synthetic data is deterministic for a seed; --kind bccd reads a local copy of BCCD (--from).
    Prints the class frequencies of what was written.
    """
    check_output_folder(output_dir)
    n = count if count is not None else DEFAULT_COUNT[kind.value]
    if n < 1:
        raise ValueError(f"--count must be >= 1, got {n}")
    if kind is Kind.bccd:
        _bccd_sample(output_dir, source, n, also, overwrite, boxed_only)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.data.synthetic import generate_sample_data, read_class_frequencies

    with cli_progress(f"{kind.value} samples", every=50) as report:
        paths = generate_sample_data(
            output_dir, kind.value, n, parse_size(size), seed, val_fraction,
            variety=variety, instances=instances, overwrite=overwrite, progress=report,
        )  # fmt: skip
    table = Table(title="class frequencies")
    table.add_column("class")
    table.add_column("fraction", justify="right")
    for name, fraction in read_class_frequencies(output_dir).items():
        table.add_row(name, f"{fraction:.4%}")
    console = Console()
    console.print(table)
    extra = ", instances/, cells.csv" if instances else ""
    console.print(
        f"{len(paths)} {kind.value} samples written to {escape(str(output_dir))} (see dataset.json, preview.png{extra})"
    )


def _bccd_sample(output_dir: Path, source: Path | None, count: int, also: Path | None, overwrite: bool,
                 boxed_only: bool) -> None:  # fmt: skip
    if source is None:
        raise ValueError("--kind bccd needs --from BCCD_FOLDER (a copy of the BCCD data set)")
    from rich.console import Console
    from rich.markup import escape

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.datasets.bccd_masks import MaskParams
    from medseg_dfl.datasets.bccd_sample import write_sample

    params = MaskParams(unboxed_platelets=not boxed_only)
    with cli_progress("BCCD images", every=5) as report:
        names = write_sample(source, output_dir, count, also=also, params=params, overwrite=overwrite,
                             progress=report)  # fmt: skip
    Console().print(f"{len(names)} BCCD train.txt images with weak masks written to {escape(str(output_dir))} "
                    "(see README.md, LICENSE, dataset.json)")  # fmt: skip
