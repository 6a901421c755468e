"""``medseg-dfl infer``: segment a file or a folder with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from medseg_dfl.pretrained import resolve_model


@user_errors
def command(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CHECKPOINT",
            help="Checkpoint (best.pt / last.pt), a run folder, a folder of fold runs (an ensemble), or a "
                 "shipped model's name (blood-smear).",
        ),
    ],
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="An image file or a folder of images.")],
    output_dir: Annotated[
        Path, typer.Argument(metavar="OUTPUT_DIR", help="Folder for the masks (created if needed).")
    ],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also search sub-folders of INPUT.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write <stem>_overlay.png.")] = False,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Also write per-class probability maps.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Windows per network call (default: checkpoint's).")
    ] = None,
    tile_overlap: Annotated[
        float | None,
        typer.Option("--tile-overlap", help="Sliding-window overlap in [0, 1) (default: checkpoint's)."),
    ] = None,
    half: Annotated[bool, typer.Option("--half", help="float16 on CUDA, bfloat16 on CPU.")] = False,
    suffix: Annotated[
        str, typer.Option("--suffix", help="Added to mask names, e.g. _seg (part of a file name: no '/' or '..').")
    ] = "",
    tta: Annotated[
        bool | None,
        typer.Option("--tta/--no-tta", help="Average the softmax over flips of the axes training flipped "
                     "(transforms.augment.flip_axes). Default: on for white-cell (single-cell) models, off otherwise."),
    ] = None,
    keep_largest: Annotated[
        str | None,
        typer.Option("--keep-largest", metavar="CLASSES",
                     help="Comma-separated class names (or 'all') whose mask keeps only its largest connected "
                          "component: for single structures (organs), never for cells."),
    ] = None,
    cell_diameter: Annotated[
        float | None,
        typer.Option("--cell-diameter", metavar="PX",
                     help="Smear models: red-cell diameter in pixels of the inputs (default: pixel size or estimate). "
                          "White-cell models: the white cell's diameter in pixels (default: searched)."),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", metavar="UM",
                     help="Smear models: microns per pixel of the inputs (default: file metadata, else estimate)."),
    ] = None,
    no_rescale: Annotated[
        bool,
        typer.Option("--no-rescale", help="2D microscopy models: run every input at its own pixel size, not at "
                                          "the training scale."),
    ] = False,
    all_objects: Annotated[
        bool,
        typer.Option("--all-objects", help="White-cell models trained on one cell per crop: keep every object "
                                           "segmented, not only the cell the nucleus marks (split from what touches it)."),
    ] = False,
    scale_per_image: Annotated[
        bool,
        typer.Option("--scale-per-image", help="White-cell models: search each input's scale on its own (inputs of "
                                               "different magnifications). Default: every input searched, then all "
                                               "run at the median cell diameter (one lab's crops share a magnification)."),
    ] = False,
    max_voxels: MaxVoxelsOption = 2**30,
    also: Annotated[
        list[Path] | None,
        typer.Option("--also", metavar="CHECKPOINT", help="Another checkpoint or run folder to ensemble with (repeatable)."),
    ] = None,
) -> None:
    """Segment INPUT into OUTPUT_DIR; masks keep each input's shape and geometry.

    A 2D blood-smear model sees each input at its training magnification (scale from --cell-diameter, --pixel-size, file metadata or an estimate); a white-cell model sees each input at the factor that makes the cell it segments as large as in training (searched on every input, then the median diameter for all; --scale-per-image: each its own; or from --cell-diameter); OUTPUT_DIR/scale.json says which.

    Several runs may share one OUTPUT_DIR: each input is claimed by one of them, so none is done twice.
    """
    checkpoint, also = resolve_model(checkpoint), [resolve_model(path) for path in also or []]
    for path in [checkpoint, *also]:
        check_exists(path, "checkpoint")
    check_exists(input, "input")
    check_output_folder(output_dir)
    check_scale_flags(cell_diameter, pixel_size)
    if tile_overlap is not None:
        check_overlap(tile_overlap, "--tile-overlap")
    from rich.console import Console
    from rich.markup import escape

    from medseg_dfl.cells.scale import UNUSUAL_SCALE, unusual_estimates
    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.engine.inference import InferenceOptions, predict_folder

    options = InferenceOptions(
        recursive=recursive,
        overwrite=overwrite,
        overlay=overlay,
        probabilities=probabilities,
        device=device,
        batch_size=batch_size,
        overlap=tile_overlap,
        half=half,
        suffix=suffix,
        tta=tta,
        keep_largest=tuple(n.strip() for n in (keep_largest or "").split(",") if n.strip()),
        rescale=not no_rescale,
        cell_diameter=cell_diameter,
        pixel_size=pixel_size,
        single_object=not all_objects,
        scale_per_image=scale_per_image,
        max_voxels=max_voxels,
    )
    with cli_progress("segmenting", every=10) as report:  # a bar on a terminal, else a line per 10 files
        summary = predict_folder([checkpoint, *(also or [])], input, output_dir, options, progress=report)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for path, reason in summary.failed:
        console.print(f"[yellow]skipped[/yellow] {escape(one_line(f'{path}: {reason}'))}")
    if summary.model_scale is not None and summary.scales:
        console.print(_scale_line(summary.model_scale, list(summary.scales.values()), output_dir), markup=False)
        if summary.model_scale.kind == "rbc":  # white cells differ in size by type: a searched spread is expected
            warn_unusual_scales(console, unusual_estimates(summary.scales), UNUSUAL_SCALE)
    where = f" (rank {summary.rank} of {summary.world_size})" if summary.world_size > 1 else ""
    elsewhere = f", {len(summary.claimed_elsewhere)} left to another run" if summary.claimed_elsewhere else ""
    console.print(
        f"{len(summary.written)} written, {len(summary.skipped_existing)} already done, "
        f"{len(summary.failed)} failed{elsewhere}{where} -> {output_dir}", markup=False,
    )
    if summary.failed:
        fail(f"{len(summary.failed)} file(s) could not be segmented")


def _scale_line(model: Any, records: list[dict[str, Any]], output_dir: Path) -> str:
    """One line: the model's red-cell (or segmented cell's) size, the inputs' sizes and resampling
    factors, their sources."""
    diameters = [r["cell_diameter_px"] for r in records]
    factors = [r["factor"] for r in records]
    sources = sorted({r["source"] for r in records})

    def span(values: list[float], form: str) -> str:
        low, high = min(values), max(values)
        return format(low, form) if format(low, form) == format(high, form) else f"{low:{form}}-{high:{form}}"

    what = "red cells" if model.kind == "rbc" else "the segmented cell"
    return (f"scale: {what} {span(diameters, '.1f')} px in {len(records)} input(s) ({', '.join(sources)}), "
            f"resampled x{span(factors, '.3g')} to the model's {model.cell_diameter_px:.1f} px ({model.source}) "
            f"-> {output_dir / 'scale.json'}")  # fmt: skip
