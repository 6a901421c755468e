"""`medseg-dfl preprocess INPUT_DIR OUTPUT_DIR`: validate, fingerprint and cache a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import err_console, fail, user_errors


def _print_bad(bad: list[tuple[Path, str]], title: str, style: str) -> None:
    err_console.print(f"[{style}]{title} ({len(bad)}):[/{style}]", markup=True, highlight=False)
    for path, reason in bad:
        err_console.print(f"  {path}: {reason}", markup=False, highlight=False, soft_wrap=True)


@user_errors
def command(
    input_dir: Annotated[Path, typer.Argument(help="Data folder: images/+labels/, *_masks files or dataset.json.")],
    output_dir: Annotated[Path, typer.Argument(help="Where dataset.json, fingerprint.json and cache/ go.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c",
            help="YAML config (data.class_names, modality, spacing...). Default: planned from INPUT_DIR "
                 "as `medseg-dfl plan` does (channels, classes, normalisation, spacing, patch).",
        ),
    ] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Carry on without the pairs that fail validation.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Validate every image/label pair, write dataset.json + fingerprint.json, cache the deterministic
    pipeline. INPUT_DIR is never modified; a re-run reuses valid cached results."""
    from rich.console import Console

    from medseg_dfl.config import load_config
    from medseg_dfl.data.preprocess import PreprocessError, preprocess_dataset
    from medseg_dfl.planning import plan_experiment

    # No --config: plan one from the data (`medseg-dfl plan`), never the sample data's class names.
    cfg = load_config(config) if config is not None else plan_experiment(input_dir).config
    try:
        result = preprocess_dataset(input_dir, output_dir, cfg, skip_bad=skip_bad, progress=not quiet)
    except PreprocessError as err:
        _print_bad(err.bad, "bad files", "red")
        fail(f"{len(err.bad)} bad file(s); nothing written (use --skip-bad to carry on without them)")
    out = Console()
    fp = result.fingerprint
    frequencies = ", ".join(f"{n} {f:.2%}" for n, f in zip(fp["class_names"], fp["class_frequencies"], strict=True))
    out.print(
        f"{result.n_ok} pairs ({result.n_train} train, {result.n_val} validation), {fp['spatial_dims']}D "
        f"{fp['modality']}, median spacing {[round(s, 3) for s in fp['median_spacing']]}", highlight=False,
    )
    out.print(f"class frequencies: {frequencies}", highlight=False)
    out.print(f"wrote {result.dataset_json_path}, {result.fingerprint_path}, {result.cache_dir}/", highlight=False)
    if result.bad:
        _print_bad(result.bad, "skipped bad files", "yellow")
