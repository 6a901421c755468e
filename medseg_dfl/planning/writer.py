"""``write_plan``: the planned config as YAML, every key with a comment saying why it has its value.

The text is generated key by key from the :class:`~medseg_dfl.config.Config` dataclasses (so a key
added to the config later is written too), values in YAML flow style; a key the planner decided
gets its reason on the line(s) above it, every other key a short description of what it does
(``medseg_dfl.config.KEY_HELP``).
``load_config`` reads the file back to the same config (tested).
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import yaml

from medseg_dfl.config import KEY_HELP
from medseg_dfl.io.atomic import write_text
from medseg_dfl.planning.plan import Plan

__all__ = ["plan_to_yaml", "write_plan"]

_WIDTH = 110


def _help(key_path: str) -> str:
    """What the key does (``config.KEY_HELP``, the one owner of key help); "" for keys inside a
    ``kwargs`` mapping the planner gave no reason."""
    return KEY_HELP.get(key_path, "")


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[: -len("\n...")].strip() if text.endswith("...") else text


def _comment_lines(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, _WIDTH - len(indent) - 2)]


def _emit(value: Any, path: str, depth: int, reasons: dict[str, str], lines: list[str]) -> None:
    indent = "  " * depth
    items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)] if dataclasses.is_dataclass(
        value) else list(value.items())
    for key, item in items:
        key_path = f"{path}.{key}" if path else key
        reason = reasons.get(key_path)
        if reason:
            lines += _comment_lines(reason, indent)
        nested = dataclasses.is_dataclass(item) or (isinstance(item, dict) and item and key_path != "loss.kwargs")
        help_text = "" if reason else _help(key_path)
        suffix = f"  # {help_text}" if help_text else ""
        if nested:
            lines.append(f"{indent}{key}:{suffix}")
            _emit(item, key_path, depth + 1, reasons, lines)
        else:
            lines.append(f"{indent}{key}: {_flow(item)}{suffix}")
        if depth == 0:
            lines.append("")


def plan_to_yaml(plan: Plan, command: str | None = None) -> str:
    """The commented YAML text of ``plan`` (``command``: how it was made, for the header)."""
    header = ["medseg-dfl plan: a config planned from the data; every comment says why a value was chosen."]
    if command:
        header.append(f"made by: {command}")
    header += [f"data: {line}" for line in plan.summary]
    header += [f"WARNING: {w}" for w in plan.warnings]
    header.append("train: medseg-dfl train THIS_FILE [--set key=value ...]; unknown keys and wrong types are errors.")
    lines = [f"# {wrapped}" for text in header for wrapped in textwrap.wrap(text, _WIDTH - 2)] + [""]
    _emit(plan.config, "", 0, plan.reasons, lines)
    return "\n".join(lines).rstrip() + "\n"


def write_plan(plan: Plan, path: str | Path, *, command: str | None = None, overwrite: bool = False) -> Path:
    """Write :func:`plan_to_yaml` to ``path`` atomically; an existing file only with ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:  # checked first too, so the refusal names the option to use
        raise FileExistsError(f"{path} exists; choose another --output or pass --overwrite")
    return write_text(path, plan_to_yaml(plan, command), overwrite=overwrite)
