"""`medseg-dfl plan DATA_DIR`: plan a commented config from the data (nnU-Net style)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import user_errors


@user_errors
def command(
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", help="Data folder: images/+labels/, *_masks files, a Decathlon dataset.json or an nnU-Net v2 DatasetXXX_Name.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Config to write (default: <data folder name>.yaml here).")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option("--time-budget", metavar="MIN", help="Fit epochs/steps to this many minutes of training here (times a few of train's steps)."),
    ] = None,
    memory_budget: Annotated[
        float | None,
        typer.Option("--memory-budget", metavar="GB", help="Memory one training step may use (default: 85% of the GPU, else RAM/4 up to 8)."),
    ] = None,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Write this as data.root (e.g. data/hippocampus) instead of DATA_DIR.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a planned key: --set train.epochs=5 (repeatable).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda for the timed steps (default: auto).")] = None,
    network_candidates: Annotated[
        bool,
        typer.Option("--network-candidates/--no-network-candidates",
                     help="With --time-budget: time a few candidate networks and choose one for the budget (else DynUNet)."),
    ] = True,
    all_cases: Annotated[
        bool,
        typer.Option("--all-cases", help="Plan a final model on every case, validating on none (nnU-Net's fold 'all'; "
                     "sets data.all_cases): the epochs fill the budget without validation time."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Plan a training config from the data; its comments say why each value was chosen.

    Reads every case and decides channels, classes, normalisation, spacing, patch, network, batch
    and epochs (nnU-Net style).
    """
    from rich.console import Console
    from rich.markup import escape

    from medseg_dfl.planning import plan_experiment, write_plan

    output = output if output is not None else Path(f"{data_dir.resolve().name.lower()}.yaml")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; choose another --output or pass --overwrite")
    plan = plan_experiment(
        data_dir, time_budget_min=time_budget, memory_budget_gb=memory_budget, data_root=data_root,
        device=device, overrides=set_, network_candidates=network_candidates, all_cases=all_cases,
    )
    command_line = "medseg-dfl plan " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    written = write_plan(plan, output, command=command_line, overwrite=overwrite)
    out = Console()
    for line in plan.summary:
        out.print(line, highlight=False)
    for warning in plan.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)  # [a,b] is not markup
    cfg = plan.config
    out.print(
        f"plan: {cfg.network.name} patch {cfg.transforms.patch_size}, batch {cfg.train.batch_size}, "
        f"{cfg.transforms.intensity} intensities, loss {cfg.loss.name}, {cfg.train.epochs} epochs", highlight=False,
    )
    out.print(f"wrote {written} (every key commented with why); train it: medseg-dfl train {written}", highlight=False)
