"""``medseg-dfl train``: train a network from a YAML config into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import user_errors


@user_errors
def command(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config, e.g. configs/blood_smear_2d.yaml.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set train.epochs=1 --set loss.name=ce (repeatable)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run directory (default: runs/<experiment.name>).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in the output directory from last.pt.")] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu or cuda (default: the config's train.device).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
    fold: Annotated[
        int | None, typer.Option("--fold", min=0, help="Validate on this fold (0-based) of --folds; sets data.fold.")
    ] = None,
    folds: Annotated[int | None, typer.Option("--folds", min=2, help="Number of folds; sets data.folds.")] = None,
) -> None:
    """Train a segmentation network (also under torchrun: torchrun --nproc_per_node 2 -m medseg_dfl.cli train CONFIG)."""
    from rich.console import Console

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.config import load_config
    from medseg_dfl.engine.training import default_run_dir, train

    fold_keys = [f"data.fold={fold}"] if fold is not None else []
    fold_keys += [f"data.folds={folds}"] if folds is not None else []
    cfg = load_config(config, [*(set_ or []), *fold_keys])
    run_dir = output if output is not None else default_run_dir(cfg)
    with cli_progress("train", enabled=progress) as report:  # a bar on a terminal, else a line per epoch
        result = train(cfg, run_dir, resume=resume, device=device, progress=report)
    if result.rank != 0:  # under torchrun only rank 0 reports
        return
    console = Console()
    best = "n/a" if result.best_epoch is None else f"{result.best_metric:.4f} (epoch {result.best_epoch})"
    console.print(f"trained {result.epochs_run} epochs; best mean foreground Dice {best}")
    console.print(f"curves:     {run_dir / 'curves.png'}")
    console.print(f"checkpoint: {run_dir / 'best.pt'}  (last: {run_dir / 'last.pt'})")

