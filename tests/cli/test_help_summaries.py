"""`medseg-dfl --help` lists every command with a one-line summary: the first paragraph of its
docstring. A summary wrapped over several source lines shows its hard line breaks in the listing
(a sentence broken in the middle), so each summary is one line and one sentence."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from medseg_dfl.cli.main import app

WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


def _groups() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    found = [([], root)]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            found.append(([name], command))
    return found


def _summary(command: Any) -> str:
    return (command.short_help or command.help or "").split("\n\n")[0].strip()


def _listed_rows(output: str) -> list[tuple[str, str]]:
    """(name column, description column) of each line of the help's Commands panel."""
    rows, inside = [], False
    for line in output.splitlines():
        if "Commands" in line and line.lstrip().startswith("╭"):
            inside = True
            continue
        if inside and line.lstrip().startswith("╰"):
            break
        if inside:
            body = line.strip().strip("│").rstrip()
            match = re.match(r" (\S*)(\s+)(.*)", body)
            assert match, line
            rows.append((match.group(1), match.group(3).strip()))
    return rows


@pytest.mark.parametrize(("path", "group"), _groups(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_summary_is_one_line_and_one_sentence(path, group):
    for name, command in group.commands.items():
        summary = _summary(command)
        assert summary, f"{name}: no summary"
        assert "\n" not in summary, f"{name}: summary has a hard line break: {summary!r}"
        assert summary.endswith("."), f"{name}: summary is not a full sentence: {summary!r}"
        assert len(summary) <= 110, f"{name}: summary longer than a line: {summary!r}"

    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = _listed_rows(result.output)
    continuation = [text for name, text in rows if not name]
    assert not continuation, f"summaries broken over several lines: {continuation}"
    assert {name: text for name, text in rows} == {name: _summary(c) for name, c in group.commands.items()}
