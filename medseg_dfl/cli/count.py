"""``medseg-dfl count``: cells per image of blood smears (any magnification) with a trained 2D model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.choices import check_overlap, check_scale_flags
from medseg_dfl.cli._common import (
    DEVICE_HELP,
    MaxVoxelsOption,
    check_exists,
    check_output_folder,
    fail,
    one_line,
    user_errors,
    warn_unusual_scales,
)
from medseg_dfl.pretrained import DEFAULT_SMEAR_MODEL, resolve_model


@user_errors
def command(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="[MODEL] INPUT OUTPUT_DIR", show_default=False,
                       help="MODEL: a checkpoint (best.pt), its run folder or a shipped model's name (default: "
                            "the shipped blood-smear model); INPUT: a smear image or a folder of them; OUTPUT_DIR: "
                            "the folder for counts.csv, cells.csv and the instance maps."),
    ],
    model_option: Annotated[
        str | None, typer.Option("--model", help="The model (as MODEL); not together with a positional MODEL.")
    ] = None,
    cell_diameter: Annotated[
        float | None,
        typer.Option("--cell-diameter", help="Red-cell diameter in pixels (default: pixel size or estimate)."),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", help="Microns per pixel (default: file metadata, else estimate)."),
    ] = None,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write <stem>_overlay.png.")] = False,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Folder of truth masks (same names) for the overlay's second panel.")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also search sub-folders of INPUT.")] = False,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    tile_overlap: Annotated[
        float | None,
        typer.Option("--tile-overlap", help="Sliding-window overlap in [0, 1) (default: checkpoint's)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the results of an earlier count in OUTPUT_DIR.")
    ] = False,
    min_platelet_probability: Annotated[
        float | None,
        typer.Option("--min-platelet-probability", min=0.0, max=1.0,
                     help="Drop platelets whose mean platelet probability is lower (0: off; default: the "
                          "model's own rule, 0 for a model without one)."),
    ] = None,
    tta: Annotated[
        bool, typer.Option("--tta/--no-tta", help="Average the softmax over the flips training used (the shipped "
                           "model's platelet rule was chosen with it; --no-tta: 4x less network time).")
    ] = True,
    max_voxels: MaxVoxelsOption = 2**30,
    platelet_clump: Annotated[
        float | None,
        typer.Option("--platelet-clump", min=0.0,
                     help="Split platelet blobs of at least this many red-cell areas at necks (default 0.3; "
                          "single platelets are ~0.07-0.15; 1: never split)."),
    ] = None,
) -> None:
    """Count red cells, white cells and platelets in INPUT; write instance maps and CSVs to OUTPUT_DIR.

    With no MODEL, the blood-smear model that ships with the package counts (medseg_dfl/models/blood_smear.md).
    """
    model, input, output_dir = _model_input_output(paths, model_option)
    check_exists(model, "checkpoint")
    check_exists(input, "input")
    check_output_folder(output_dir)
    if truth is not None:
        check_exists(truth, "truth folder", folder=True)
    check_scale_flags(cell_diameter, pixel_size)
    if tile_overlap is not None:
        check_overlap(tile_overlap, "--tile-overlap")
    from rich.console import Console

    from medseg_dfl.cells.scale import UNUSUAL_SCALE, unusual_estimates
    from medseg_dfl.engine.counting import CountOptions, count_cells

    given = {"min_platelet_probability": min_platelet_probability, "clump": platelet_clump}
    options = CountOptions(cell_diameter=cell_diameter, pixel_size=pixel_size, overlay=overlay or truth is not None,
                           truth_dir=truth, device=device, overlap=tile_overlap, recursive=recursive, overwrite=overwrite,
                           rule_overrides={k: v for k, v in given.items() if v is not None},
                           max_voxels=max_voxels, tta=tta)  # fmt: skip
    summary = count_cells(model, input, output_dir, options)
    console = Console(stderr=True, highlight=False)
    console.print(f"model scale: red cells {summary.model_diameter_px:.1f} px ({summary.model_scale_source})",
                  markup=False)  # fmt: skip
    for row in summary.counts:
        counts = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("image", "scale_source") and v != "")
        console.print(f"{row['image']}: {counts} (scale: {row['scale_source']})", markup=False, soft_wrap=True)
    for path, reason in summary.failed:
        console.print(one_line(f"skipped {path}: {reason}"), markup=False, soft_wrap=True)
    warn_unusual_scales(console, unusual_estimates(summary.scales), UNUSUAL_SCALE)
    console.print(f"{len(summary.counts)} counted, {len(summary.failed)} failed -> {output_dir}/counts.csv, cells.csv", markup=False)
    if summary.failed:
        fail(f"{len(summary.failed)} file(s) could not be counted")


def _model_input_output(paths: list[Path], model_option: str | None) -> tuple[Path, Path, Path]:
    """(model, input, output folder) of ``[MODEL] INPUT OUTPUT_DIR`` and ``--model``; a shipped
    model's name becomes its file."""
    if len(paths) not in (2, 3):
        raise ValueError(f"count takes [MODEL] INPUT OUTPUT_DIR, got {len(paths)} path(s)")
    if len(paths) == 3 and model_option is not None:
        raise ValueError("give the model once: as the first argument or as --model, not both")
    model = str(paths[0]) if len(paths) == 3 else (model_option or DEFAULT_SMEAR_MODEL)
    return resolve_model(model), paths[-2], paths[-1]
