"""`medseg-dfl preprocess INPUT_DIR OUTPUT_DIR`: validate, fingerprint and cache a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import check_exists, check_output_folder, print_bad_files, user_errors


@user_errors
def command(
    input_dir: Annotated[
        Path, typer.Argument(metavar="INPUT_DIR", help="Data folder: images/+labels/, *_masks files or dataset.json.")
    ],
    output_dir: Annotated[
        Path, typer.Argument(metavar="OUTPUT_DIR", help="Where dataset.json, fingerprint.json and cache/ go.")
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", metavar="CONFIG",
            help="YAML config (data.class_names, modality, spacing...). Default: planned from INPUT_DIR "
                 "as `medseg-dfl plan` does (channels, classes, normalisation, spacing, patch).",
        ),
    ] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Carry on without the pairs that fail validation.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Validate every image/label pair, fingerprint the data set and cache the pipeline.

    Writes dataset.json + fingerprint.json and caches the deterministic part of the pipeline.
    INPUT_DIR is never modified; a re-run reuses valid cached results.
    """
    check_exists(input_dir, "input folder", folder=True)
    check_output_folder(output_dir)
    if config is not None:
        check_exists(config, "config file", folder=False)
    from rich.console import Console
    from rich.markup import escape

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.config import load_config
    from medseg_dfl.data.preprocess import preprocess_dataset
    from medseg_dfl.planning import plan_experiment

    # No --config: plan one from the data (`medseg-dfl plan`), never the sample data's class names.
    cfg = load_config(config) if config is not None else plan_experiment(input_dir).config
    # A PreprocessError (bad files, nothing written) is listed one line per file by user_errors.
    with cli_progress("preprocess", enabled=not quiet, every=50) as report:
        result = preprocess_dataset(input_dir, output_dir, cfg, skip_bad=skip_bad, progress=report)
    out = Console(highlight=False)
    fp = result.fingerprint
    frequencies = ", ".join(f"{n} {f:.2%}" for n, f in zip(fp["class_names"], fp["class_frequencies"], strict=True))
    out.print(
        f"{result.n_ok} pairs ({result.n_train} train, {result.n_val} validation), {fp['spatial_dims']}D "
        f"{fp['modality']}, median spacing {[round(s, 3) for s in fp['median_spacing']]}", markup=False,
    )
    out.print(f"class frequencies: {escape(frequencies)}")
    out.print(f"wrote {result.dataset_json_path}, {result.fingerprint_path}, {result.cache_dir}/", markup=False)
    if result.bad:
        print_bad_files(result.bad, f"skipped bad files ({len(result.bad)}):")
