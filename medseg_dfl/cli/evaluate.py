"""``medseg-dfl evaluate``: Dice, IoU, HD95 and ASD of predicted masks against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import check_exists, check_output_folder, user_errors


@user_errors
def command(
    pred_dir: Annotated[
        Path, typer.Argument(metavar="PRED_DIR", help="Folder of predicted label maps (<stem>[_seg].<ext>).")
    ],
    truth_dir: Annotated[
        Path, typer.Argument(metavar="TRUTH_DIR", help="Folder of ground-truth label maps with the same stems.")
    ],
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Comma-separated class names, background first (default: class_0, ...)."),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="REPORT_CSV", help="CSV report (a JSON with the summary is written beside it)."),
    ] = Path("report.csv"),
) -> None:
    """Score PRED_DIR against TRUTH_DIR per case and class; print mean ± std per class.

    HD95 and ASD are in mm for volumes (from the voxel spacing) and in pixels for 2D images.
    """
    check_exists(pred_dir, "prediction folder", folder=True)
    check_exists(truth_dir, "truth folder", folder=True)
    check_output_folder(output.parent, "report folder")
    from rich.console import Console

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.engine.evaluation import evaluate_folders, summary_table

    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with cli_progress("evaluating", every=20) as progress:
        report = evaluate_folders(pred_dir, truth_dir, class_names=names, output=output, progress=progress)
    console = Console()
    console.print(summary_table(report))
    console.print(f"per case: {report.csv_path}\nsummary:  {report.json_path}", highlight=False, markup=False)
