"""The import graph reads top-down: no loops, lower layers never import higher ones, and package
imports sit at the top of modules (only CLI commands defer theirs, for start-up time)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from monai.networks import nets

from medseg_dfl.choices import LOSS_NAMES, NETWORK_NAMES
from medseg_dfl.losses.registry import _REGISTRY

PACKAGE = Path(__file__).resolve().parents[1] / "medseg_dfl"
# Lowest first (docs/CONTRIBUTING.md). A module may import its own layer and those before it.
LAYERS = ["progress", "choices", "losses", "io", "config", "networks", "transforms", "data", "visualize", "engine",
          "demo", "cli"]  # fmt: skip
# The one deferred import outside the CLI: torch, only for io.atomic.torch_save (io stays light).
ALLOWED_DEFERRED = {("io/atomic.py", "torch")}
# Packages not placed in LAYERS (their layer checks are the loop test); all are checked for deferred imports.
NOT_YET_CHECKED: tuple[str, ...] = ()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(package modules imported at module level, (line, module) of imports inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medseg_dfl"):
            top.add(node.module)
            top.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            top.update(a.name for a in node.names if a.name.startswith("medseg_dfl"))
    deferred = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and node.module:
                    deferred.append((node.lineno, node.module))
                elif isinstance(node, ast.Import):
                    deferred += [(node.lineno, a.name) for a in node.names]
    return top, deferred


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path)[0] if m in files and m != name} for name, path in files.items()}


def test_no_import_loops():
    graph = _graph()
    state: dict[str, int] = {}
    loops: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert loops == []


def _layer(module: str) -> int | None:
    part = module.split(".")[1] if "." in module else None
    return LAYERS.index(part) if part in LAYERS else None


def test_lower_layers_never_import_higher_ones():
    upward = []
    for name, imported in _graph().items():
        own = _layer(name)
        for target in imported:
            theirs = _layer(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_package_imports_are_at_module_top_outside_the_cli():
    deferred = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith(("cli/", *NOT_YET_CHECKED)):
            continue
        for line, module in _imports(path)[1]:
            heavy = module.split(".")[0] in ("medseg_dfl", "monai", "torch", "rich", "nibabel", "PIL", "matplotlib")
            if heavy and (rel, module) not in ALLOWED_DEFERRED:
                deferred.append(f"{rel}:{line} {module}")
    assert deferred == []


# Distribution name -> the module it is imported as.
_IMPORT_NAME = {"scikit-image": "skimage", "pillow": "PIL", "pyyaml": "yaml"}


def test_every_declared_dependency_is_imported():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    sources = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    unused = []
    for requirement in project["dependencies"]:
        dist = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        module = _IMPORT_NAME.get(dist.lower(), dist)
        if not re.search(rf"^\s*(import|from) {re.escape(module)}\b", sources, re.MULTILINE):
            unused.append(dist)
    assert unused == []


def test_loss_and_network_names_are_listed_once_and_all_buildable():
    assert tuple(_REGISTRY) == LOSS_NAMES
    assert all(isinstance(getattr(nets, name), type) for name in NETWORK_NAMES)
