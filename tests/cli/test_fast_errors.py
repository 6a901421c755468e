"""Argument and path errors answer before torch/MONAI are imported (start-up time, issue 9 §5):
one red line, exit code 1. The time itself is in docs/benchmarks.md; here we check the cause."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sys
from medseg_dfl.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    heavy = sorted(m for m in ("torch", "monai", "numpy") if m in sys.modules)
    print(f"exit={exit.code} heavy={','.join(heavy) or 'none'}", file=sys.stderr)
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["infer", "/nonexistent.pt", "/nonexistent", "/tmp/out"], "checkpoint not found: /nonexistent.pt"),
        (["train", "/nonexistent.yaml"], "config file not found: /nonexistent.yaml"),
        (["preprocess", "/nonexistent", "/tmp/out"], "input folder not found: /nonexistent"),
        (["evaluate", "/nonexistent", "/tmp"], "prediction folder not found: /nonexistent"),
        (["compare", "/nonexistent.yaml"], "config file not found: /nonexistent.yaml"),
        (["count", "/nonexistent.pt", "/nonexistent", "/tmp/out"], "checkpoint not found: /nonexistent.pt"),
        (["count", "/", "/nonexistent", "/tmp/out"], "input not found: /nonexistent"),
    ],
)
def test_path_errors_come_before_heavy_imports(args, message):
    result = _run(*args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {message}", "exit=1 heavy=none"], result.stderr


def test_infer_with_a_missing_checkpoint_is_one_line_and_exit_1(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "medseg_dfl.cli", "infer", "/nonexistent.pt", "/nonexistent", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr.strip() == "error: checkpoint not found: /nonexistent.pt"
    assert not (tmp_path / "o").exists()


def test_help_names_losses_and_networks_and_shows_no_bool_placeholders():
    from typer.testing import CliRunner

    from medseg_dfl.cli.main import app
    from medseg_dfl.cli.names import LOSS_NAMES, NETWORK_NAMES
    from medseg_dfl.losses.registry import LOSS_NAMES as REGISTERED_LOSSES
    from medseg_dfl.networks import NETWORK_NAMES as REGISTERED_NETWORKS

    assert (LOSS_NAMES, NETWORK_NAMES) == (REGISTERED_LOSSES, REGISTERED_NETWORKS)  # the help's copies
    runner = CliRunner()

    def help_text(command: str) -> str:  # the words of the help, without the box drawing
        return " ".join(runner.invoke(app, [command, "--help"]).output.replace("│", " ").split())

    train_help = help_text("train")
    assert all(name in train_help for name in (*LOSS_NAMES, *NETWORK_NAMES))
    for command in ("train", "infer", "preprocess", "evaluate", "compare"):
        assert "<bool>" not in help_text(command), command
    infer_help = help_text("infer")
    assert "auto (CUDA when available), cpu, cuda or cuda:N." in infer_help and "{CHECKPOINT} {INPUT} {OUTPUT_DIR}" in infer_help
    assert "auto (CUDA when available), cpu, cuda or cuda:N." in train_help
    compare_help = help_text("compare")
    assert "Default: ce, focal, dice-ce, dfl, dfl-acw, dfl-learnable, dice-dfl." in compare_help


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile-overlap", "1.0"], "--tile-overlap must be in [0, 1), got 1.0"),
        (["--tile-overlap", "-0.1"], "--tile-overlap must be in [0, 1), got -0.1"),
        (["--cell-diameter", "0"], "--cell-diameter must be a positive number of pixels, got 0.0"),
        (["--pixel-size", "-1"], "--pixel-size must be a positive number of microns, got -1.0"),
    ],
)
@pytest.mark.parametrize("command", ["count", "infer"])
def test_overlap_and_scale_flags_fail_before_any_model_is_loaded(tmp_path, command, flags, message):
    """One rule (medseg_dfl.choices) for both commands and the predictor: overlap in [0, 1), a given
    scale positive; a bad value is one red line before torch is imported, and nothing is written."""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not read")
    (tmp_path / "images").mkdir()
    result = _run(command, str(checkpoint), str(tmp_path / "images"), str(tmp_path / "out"), *flags)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {message}", "exit=1 heavy=none"], result.stderr
    assert not (tmp_path / "out").exists()


def test_count_accepts_the_overlaps_the_predictor_accepts(monkeypatch):
    from medseg_dfl.choices import check_overlap

    assert check_overlap(0.0) == 0.0 and check_overlap(0.99) == 0.99  # infer's old limit was 0.95
    for bad in (1.0, -0.01, True):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
            check_overlap(bad)
