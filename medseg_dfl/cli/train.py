"""``medseg-dfl train``: train a network from a YAML config into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import DEVICE_HELP, SET_HELP, check_exists, check_output_folder, user_errors
from medseg_dfl.cli.names import with_names


@user_errors
def command(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config, e.g. configs/blood_smear_2d.yaml.")],
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP)] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="RUN_DIR", help="Run directory (default: runs/NAME, NAME = experiment.name)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in the output directory from last.pt.")] = False,
    device: Annotated[
        str | None, typer.Option("--device", help=f"{DEVICE_HELP} Default: the config's train.device.")
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Train without the pairs that fail validation (default: stop, list them).")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
    fold: Annotated[
        int | None, typer.Option("--fold", min=0, help="Validate on this fold (0-based) of --folds; sets data.fold.")
    ] = None,
    folds: Annotated[int | None, typer.Option("--folds", min=2, help="Number of folds; sets data.folds.")] = None,
    all_cases: Annotated[
        bool,
        typer.Option("--all-cases", help="Train on every case, validate on none (nnU-Net's fold 'all'): a final model "
                     "after a validated run; best.pt is the last epoch. Sets data.all_cases."),
    ] = False,
) -> None:
    """Train a segmentation network from a YAML config (also under torchrun).

    Several processes or GPUs: torchrun --nproc_per_node 2 -m medseg_dfl.cli train CONFIG.

    Every image/label pair is checked first (as preprocess does; results cached by file size and
    time): bad files are listed one per line and nothing is made, unless --skip-bad.
    """
    check_exists(config, "config file", folder=False)
    if output is not None:
        check_output_folder(output, "run directory")
    from rich.console import Console
    from rich.markup import escape

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.config import load_config
    from medseg_dfl.data.folds import with_all_cases, with_fold
    from medseg_dfl.engine.training import default_run_dir, train

    cfg = with_fold(load_config(config, set_), fold, folds)  # typed values, not "--set" strings
    cfg = with_all_cases(cfg) if all_cases else cfg
    run_dir = output if output is not None else default_run_dir(cfg)
    with cli_progress("train", enabled=progress) as report:  # a bar on a terminal, else a line per epoch
        result = train(cfg, run_dir, resume=resume, device=device, progress=report, skip_bad=skip_bad)
    if result.rank != 0:  # under torchrun only rank 0 reports
        return
    console = Console(highlight=False)
    if cfg.data.all_cases:
        source = "--all-cases" if all_cases else "data.all_cases"
        console.print(f"trained {result.epochs_run} epochs on every case; no validation ({source}): best.pt is the last epoch")
    else:
        best = "n/a" if result.best_epoch is None else f"{result.best_metric:.4f} (epoch {result.best_epoch})"
        console.print(f"trained {result.epochs_run} epochs; best mean foreground Dice {best}")
    for path, reason in result.skipped:
        console.print(f"skipped bad file {escape(str(path))}: {escape(reason)}")
    console.print(f"curves:     {escape(str(run_dir / 'curves.png'))}")
    console.print(f"checkpoint: {escape(str(run_dir / 'best.pt'))}  (last: {escape(str(run_dir / 'last.pt'))})")


command.__doc__ = with_names(command.__doc__)
