"""``medseg-dfl export-bundle``: a trained run as a MONAI bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import user_errors


@user_errors
def command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help=(
        "Run directory written by medseg-dfl train (best.pt inside), a checkpoint file, or a shipped model's "
        "name (blood-smear)."))],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Bundle folder to write (configs/, models/model.pt, docs/).")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file in RUN (a run directory).")] = "best.pt",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing, non-empty OUT_DIR.")] = False,
) -> None:
    """Export RUN as a MONAI bundle whose inference reproduces medseg-dfl infer."""
    from rich.console import Console

    from medseg_dfl.bundle import export_bundle

    out = export_bundle(run_dir, out_dir, checkpoint=checkpoint, overwrite=overwrite)
    Console(stderr=True, highlight=False).print(
        f"bundle written to {out}\n  python -m monai.bundle run --config_file {out}/configs/inference.json "
        f"--bundle_root {out} --dataset_dir IMAGES --output_dir MASKS",
        soft_wrap=True,
    )
