"""``medseg-dfl compare``: train one run per loss and seed, then tabulate and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import DEVICE_HELP, SET_HELP, check_exists, user_errors
from medseg_dfl.cli.names import LOSS_NAMES

DEFAULT_LOSSES = "ce,focal,dice-ce,dfl,dfl-acw,dfl-learnable,dice-dfl"


def _split_names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@user_errors
def command(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="Training config (YAML); everything but the loss is shared.")
    ],
    losses: Annotated[
        str,
        typer.Option(
            "--losses", metavar="NAMES", show_default=False,
            help=f"Comma-separated loss names. Default: {DEFAULT_LOSSES.replace(',', ', ')}. Known: {', '.join(LOSS_NAMES)}.",
        ),
    ] = DEFAULT_LOSSES,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Runs per loss (seeds base, base+1, ...).")] = 3,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="OUTPUT_DIR", help="Output folder (default: runs/compare-<experiment.name>).")
    ] = None,
    rare_classes: Annotated[
        str | None, typer.Option("--rare-classes", help="Comma-separated class names (default: all but the most frequent foreground class).")
    ] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Rare-class Dice that counts as converged.")] = 0.5,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP)
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help=f"{DEVICE_HELP} Default: the config's train.device.")
    ] = None,
) -> None:
    """Compare losses on one config: per-class Dice/IoU (mean ± std over seeds) and convergence."""
    check_exists(config, "config file", folder=False)
    from rich.console import Console

    from medseg_dfl.cli._progress import cli_progress
    from medseg_dfl.config import load_config
    from medseg_dfl.engine.compare import compare_losses

    cfg = load_config(config, overrides)
    output_dir = output or Path("runs") / f"compare-{cfg.experiment.name}"
    with cli_progress("train") as report:
        result = compare_losses(
            cfg,
            _split_names(losses) or [],
            seeds,
            output_dir,
            rare_classes=_split_names(rare_classes),
            threshold=threshold,
            device=device,
            progress=report,
        )
    console = Console()
    console.print(result.results_md.read_text(encoding="utf-8"), markup=False, highlight=False, soft_wrap=True)
    console.print(f"results: {result.results_csv}\ntable:   {result.results_md}\nplot:    {result.convergence_png}",
                  markup=False, highlight=False)
