"""``medseg-dfl count``: cells per image of blood smears (any magnification) with a trained 2D model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import DEVICE_HELP, fail, user_errors, warn_unusual_scales


@user_errors
def command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Checkpoint (best.pt) or its run folder.")],
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="A smear image or a folder of them.")],
    output_dir: Annotated[Path, typer.Argument(metavar="OUTPUT_DIR", help="Folder for counts.csv, cells.csv and the instance maps.")],
    cell_diameter: Annotated[
        float | None,
        typer.Option("--cell-diameter", min=1.0, help="Red-cell diameter in pixels (default: pixel size or estimate)."),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", min=1e-4, help="Microns per pixel (default: file metadata, else estimate)."),
    ] = None,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write <stem>_overlay.png.")] = False,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Folder of truth masks (same names) for the overlay's second panel.")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also search sub-folders of INPUT.")] = False,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the results of an earlier count in OUTPUT_DIR.")
    ] = False,
    min_platelet_probability: Annotated[
        float,
        typer.Option("--min-platelet-probability", min=0.0, max=1.0,
                     help="Drop platelets whose mean platelet probability is lower (0: off; BCCD model: 0.67)."),
    ] = 0.0,
    max_voxels: Annotated[
        int,
        typer.Option("--max-voxels", min=1, metavar="N",
                     help="Refuse inputs whose header declares more voxels x channels (default 2**30; "
                          "docs/input_limits.md)."),
    ] = 2**30,
    platelet_clump: Annotated[
        float | None,
        typer.Option("--platelet-clump", min=0.0,
                     help="Split platelet blobs of at least this many red-cell areas at necks (default 0.3; "
                          "single platelets are ~0.07-0.15; 1: never split)."),
    ] = None,
) -> None:
    """Count red cells, white cells and platelets in INPUT; write instance maps and CSVs to OUTPUT_DIR."""
    from rich.console import Console

    from medseg_dfl.cells.instances import InstanceParams
    from medseg_dfl.cells.pipeline import CountOptions, count_cells
    from medseg_dfl.cells.scale import UNUSUAL_SCALE, unusual_estimates

    if truth is not None and not truth.is_dir():
        raise FileNotFoundError(f"truth folder not found: {truth}")
    clump = {} if platelet_clump is None else {"clump": platelet_clump}
    params = InstanceParams(min_platelet_probability=min_platelet_probability, **clump)
    options = CountOptions(cell_diameter=cell_diameter, pixel_size=pixel_size, overlay=overlay or truth is not None,
                           truth_dir=truth, device=device, recursive=recursive, overwrite=overwrite,
                           instance_params=params, max_voxels=max_voxels)  # fmt: skip
    summary = count_cells(model, input, output_dir, options)
    console = Console(stderr=True, highlight=False)
    console.print(f"model scale: red cells {summary.model_diameter_px:.1f} px ({summary.model_scale_source})",
                  markup=False)  # fmt: skip
    for row in summary.counts:
        counts = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("image", "scale_source") and v != "")
        console.print(f"{row['image']}: {counts} (scale: {row['scale_source']})", markup=False, soft_wrap=True)
    for path, reason in summary.failed:
        console.print(f"skipped {path}: {reason}", markup=False, soft_wrap=True)
    warn_unusual_scales(console, unusual_estimates(summary.scales), UNUSUAL_SCALE)
    console.print(f"{len(summary.counts)} counted, {len(summary.failed)} failed -> {output_dir}/counts.csv, cells.csv", markup=False)
    if summary.failed:
        fail(f"{len(summary.failed)} file(s) could not be counted")
