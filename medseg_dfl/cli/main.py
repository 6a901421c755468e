"""``medseg-dfl``: one sub-command per module of this package."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from medseg_dfl.cli import (
    compare,
    count,
    demo,
    evaluate,
    export,
    export_bundle,
    infer,
    plan,
    preprocess,
    sample_data,
    train,
)
from medseg_dfl.cli import datasets as datasets_cli

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


# Commands that need pytorch-ignite (MONAI's bundle workflows); see set_up_process.
_NEEDS_IGNITE = {"export-bundle"}
# Commands whose time goes into training steps (plan times them): libgomp's default wait policy
# (spin a little, then sleep) is left to them; see set_up_process.
_TRAINS = {"train", "plan", "compare", "demo"}


def set_up_process(command: str | None) -> None:
    """The CLI's process set-up, run once as a command starts (before it imports torch or MONAI).

    This is the package's one module-level state (docs/CONTRIBUTING.md): it changes the process
    (environment, ``sys.modules``, a Typer class), so only the CLI, which owns its process, does it;
    importing any module, this one included, changes nothing, and the library never does this.

    - ``OMP_WAIT_POLICY=PASSIVE`` (unless already set) for every command but those in ``_TRAINS``:
      idle OpenMP threads spin by default and steal the cores that the working threads need
      (measured 4x slower single-threaded loops on a shared 2-core machine). A training step is
      thousands of short parallel regions, where waking sleeping threads each time costs more:
      with PASSIVE the hippocampus epochs took 1.09x and the white-cell ones 1.21x as long on
      the idle 2-core machine (docs/benchmarks.md), so training commands keep libgomp's default,
      and ``plan`` times the steps under the policy that ``train`` will run them with. OpenMP
      reads it once, when torch loads: the commands import torch inside their functions, after this.
    - ``ignite`` marked absent (``sys.modules["ignite"] = None``) for every command except those in
      ``_NEEDS_IGNITE``: MONAI imports pytorch-ignite (when installed, e.g. by the dev extra) as it
      loads, 1-2 s of CPU per command, for nothing but bundle workflows; MONAI's optional import
      then skips it (docs/benchmarks.md).
    - Typer's help shows ``<bool>`` after a flag (``--overlay <bool>``), as if it took a value; a
      flag takes none, so its help shows nothing there (``TyperOption.display_type_rich`` wrapped).
    """
    if command not in _TRAINS:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if command not in _NEEDS_IGNITE:
        sys.modules.setdefault("ignite", None)  # type: ignore[assignment]
    _flags_without_placeholder()


def _flags_without_placeholder() -> None:
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_medseg_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._medseg_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Medical image segmentation with the Dual Focal Loss (MONAI based)."""
    set_up_process(ctx.invoked_subcommand)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
