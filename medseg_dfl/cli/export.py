"""``medseg-dfl export``: a trained network as ONNX and TorchScript, with a README of its pre- and
post-processing for users outside Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg_dfl.cli._common import user_errors


@user_errors
def command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Run directory written by medseg-dfl train (best.pt inside), or a checkpoint .pt file.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder to write (model.onnx, model.ts, README.md, preprocessing.json).")],
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: onnx, torchscript.")] = "onnx,torchscript",
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file in a run directory MODEL.")] = "best.pt",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing, non-empty OUT_DIR.")] = False,
) -> None:
    """Export MODEL's network as ONNX and/or TorchScript, each checked against PyTorch (max |logit difference|)."""
    from rich.console import Console

    from medseg_dfl.bundle.portable import export_portable, parse_formats

    chosen = parse_formats(formats)  # an unknown format fails before the checkpoint is read
    if "onnx" in chosen:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise ValueError(f"ONNX export needs onnx and onnxruntime: pip install 'medseg-dfl[onnx]' ({err})") from err
    result = export_portable(model, out_dir, formats=chosen, checkpoint=checkpoint, overwrite=overwrite)
    lines = [f"exported to {result.out_dir}"]
    lines += [f"  {fmt}: {result.files[fmt].name} (max |logit - PyTorch| {diff:.1e})" for fmt, diff in result.max_abs_diff.items()]
    lines.append(f"  pre/post-processing: {result.files['readme']}")
    Console(stderr=True, highlight=False).print("\n".join(lines), soft_wrap=True, markup=False)
