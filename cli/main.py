"""``medseg-dfl``: one sub-command per module of this package."""

from __future__ import annotations

import typer

from medseg_dfl.cli import compare, evaluate, infer, preprocess, sample_data, train

app = typer.Typer(
    name="medseg-dfl",
    help="Medical image segmentation with the Dual Focal Loss (MONAI based).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("sample-data")(sample_data.command)
app.command("preprocess")(preprocess.command)
app.command("train")(train.command)
app.command("infer")(infer.command)
app.command("evaluate")(evaluate.command)
app.command("compare")(compare.command)


@app.callback()
def _root() -> None:
    """Medical image segmentation with the Dual Focal Loss (MONAI based)."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
