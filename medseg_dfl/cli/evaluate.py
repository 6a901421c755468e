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
        Path, typer.Argument(metavar="TRUTH_DIR", help="Folder of ground-truth label maps with the same stems (or an nnU-Net DatasetXXX_Name: its labelsTr/ and labels).")
    ],
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Comma-separated class names, background first (default: class_0, ...)."),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="REPORT_CSV", help="CSV report (a JSON with the summary is written beside it)."),
    ] = Path("report.csv"),
    html_report: Annotated[
        Path | None,
        typer.Option("--report", metavar="REPORT_HTML", help="HTML report (one self-contained file; default: REPORT_CSV with .html)."),
    ] = None,
    no_html: Annotated[bool, typer.Option("--no-report", help="Write no HTML report.")] = False,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder of the cases' images for the report's pictures (default: images/ beside TRUTH_DIR)."),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option("--run", metavar="RUN_DIR", help="Run the predictions came from: its training curves in the report (default: a metrics.csv in PRED_DIR or above it)."),
    ] = None,
) -> None:
    """Score PRED_DIR against TRUTH_DIR per case and class; print mean ± std per class.

    HD95 and ASD are in mm for volumes (from the voxel spacing) and in pixels for 2D images.
    """
    check_exists(pred_dir, "prediction folder", folder=True)
    check_exists(truth_dir, "truth folder", folder=True)
    check_output_folder(output.parent, "report folder")
    if images is not None:
        check_exists(images, "images folder", folder=True)
    from rich.console import Console

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.engine.evaluation import evaluate_folders, summary_table

    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with cli_progress("evaluating", every=20) as progress:
        report = evaluate_folders(pred_dir, truth_dir, class_names=names, output=output, progress=progress)
    console = Console()
    console.print(summary_table(report))
    console.print(f"per case: {report.csv_path}\nsummary:  {report.json_path}", highlight=False, markup=False)
    if not no_html:
        from medseg_dfl.engine.evaluation_report import find_run_metrics, write_html_report

        target = html_report if html_report is not None else report.csv_path.with_suffix(".html")
        with cli_progress("drawing", every=0) as progress:
            page = write_html_report(report, target, images_dir=images, run_metrics=find_run_metrics(pred_dir, run),
                                     progress=progress)  # fmt: skip
        console.print(f"report:   {page}", highlight=False, markup=False)
