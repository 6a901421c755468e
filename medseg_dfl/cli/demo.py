"""``medseg-dfl demo``: the README's demo (train, segment, score) ending with a per-class table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import DEVICE_HELP, check_exists, user_errors


def _table(result):  # -> rich.table.Table
    from rich.table import Table

    n = len(result.report.cases)
    table = Table(
        title=f"Validation Dice per class ({n} slides, best checkpoint after {result.epochs} epochs)",
        caption="Dice = 2·|prediction ∩ truth| / (|prediction| + |truth|): 1 is a perfect outline, 0 no "
        "overlap. Mean ± std over the slides that have the class (n).",
    )
    for column in ("class", "Dice", "IoU", "n"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, metrics in result.report.summary().items():
        dice, iou = metrics["dice"], metrics["iou"]
        if dice["n"] == 0:
            table.add_row(name, "n/a", "n/a", "0")
            continue
        table.add_row(name, f"{dice['mean']:.3f} ± {dice['std']:.3f}", f"{iou['mean']:.3f} ± {iou['std']:.3f}",
                      str(dice["n"]))  # fmt: skip
    return table


@user_errors
def command(
    config: Annotated[Path, typer.Option("--config", help="Config to train.")] = Path("configs/blood_smear_2d.yaml"),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = 80,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run folder (default: runs/demo-<time>).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help=DEVICE_HELP)] = None,
) -> None:
    """Train with the Dual Focal Loss on the sample smears, then segment and score the validation slides.

    The sample smears are synthetic plus a few real BCCD smears; the validation slides are synthetic.
    """
    check_exists(config, "config file", folder=False)
    from rich.console import Console
    from rich.markup import escape

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.demo import run_demo

    with cli_progress("train") as report:
        result = run_demo(config, output, epochs, device, progress=report)
    console = Console(highlight=False)
    console.print(_table(result))
    console.print(f"took {result.seconds / 60:.1f} min")
    console.print(f"run (curves.png, metrics.csv, best.pt): {escape(str(result.run_dir))}")
    console.print(f"validation masks and overlays:         {escape(str(result.masks_dir))}")
    console.print(f"evaluation report:                     {escape(str(result.report_csv))}")
