"""``medseg-dfl``: one sub-command per module of this package."""

from __future__ import annotations

import os
import sys

# Idle OpenMP threads spin by default and steal the cores that the working threads need (measured
# 4x slower single-threaded loops on a shared 2-core machine). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from medseg_dfl.cli import (  # noqa: E402
    compare,
    count,
    demo,
    evaluate,
    export,
    export_bundle,  # noqa: E402
    infer,
    plan,
    preprocess,
    sample_data,
    train,
)
from medseg_dfl.cli import datasets as datasets_cli  # noqa: E402

app = typer.Typer(
    name="medseg-dfl",
    help="Medical image segmentation with the Dual Focal Loss (MONAI based).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("sample-data")(sample_data.command)
app.command("plan")(plan.command)
app.command("preprocess")(preprocess.command)
app.command("train")(train.command)
app.command("infer")(infer.command)
app.command("evaluate")(evaluate.command)
app.command("count")(count.command)
app.command("compare")(compare.command)
app.command("demo")(demo.command)
app.command("export-bundle")(export_bundle.command)
app.command("export")(export.command)
app.add_typer(datasets_cli.app, name="datasets")


# MONAI imports pytorch-ignite (when installed, e.g. by the dev extra) as it loads: 1-2 s of CPU per
# command, for nothing except bundle workflows. This process (the CLI's own) marks it absent for the
# other commands, so MONAI's optional import skips it; the library never does this.
_NEEDS_IGNITE = {"export-bundle"}


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Medical image segmentation with the Dual Focal Loss (MONAI based)."""
    if ctx.invoked_subcommand not in _NEEDS_IGNITE:
        sys.modules.setdefault("ignite", None)  # type: ignore[assignment]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
