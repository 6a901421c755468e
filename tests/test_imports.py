"""The import graph reads top-down: no loops, lower layers never import higher ones, and package
imports sit at the top of modules (only CLI commands defer theirs, for start-up time)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from monai.networks import nets

import medseg_dfl
from medseg_dfl.choices import LOSS_NAMES, NETWORK_NAMES
from medseg_dfl.losses.registry import _REGISTRY

PACKAGE = Path(__file__).resolve().parents[1] / "medseg_dfl"
# Lowest first (docs/CONTRIBUTING.md). A module may import its own layer and those before it; every
# folder and top-level module of the package is in exactly one layer.
LAYERS: list[tuple[str, ...]] = [
    ("io",),
    ("choices", "config_help", "pretrained", "progress", "stain", "untracked"),  # small shared pieces
    ("losses",),
    ("config",),
    ("networks",),
    ("transforms",),
    ("data",),
    ("cells",),
    ("visualize",),
    ("datasets",),
    ("engine",),
    ("planning",),
    ("bundle",),
    ("demo",),
    ("cli",),
]
# The one deferred import outside the CLI: torch, only for io.atomic.torch_save (io stays light).
ALLOWED_DEFERRED = {("io/atomic.py", "torch")}


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


def _area(module: str) -> str | None:
    """The folder or top-level module of the package that holds ``module`` (None: the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer(module: str) -> int | None:
    area = _area(module)
    return next((i for i, names in enumerate(LAYERS) if area in names), None)


def test_every_folder_and_top_level_module_is_in_exactly_one_layer():
    areas = {_area(name) for name in _graph()} - {None}
    placed = [name for names in LAYERS for name in names]
    assert sorted(areas - set(placed)) == []  # a new folder or module: give it a layer
    assert sorted(set(placed) - areas) == []  # a layer naming nothing: stale
    assert len(placed) == len(set(placed))


def _every_import(path: Path) -> set[str]:
    """Package modules imported anywhere in the file: module top, functions, ``if TYPE_CHECKING``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("medseg_dfl.")}


def _area_graph() -> dict[str, set[str]]:
    """Each folder (and top-level module) one node; every import counts, deferred ones too; the package
    root, which re-exports lazily, is left out."""
    areas: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        own = _area(_module_name(path))
        if own is None:
            continue
        areas.setdefault(own, set()).update(a for a in map(_area, _every_import(path)) if a != own)
    return areas


def test_no_import_loops_between_folders():
    """cells -> engine -> cells would pass the module loop test: each module on its own is acyclic."""
    graph = _area_graph()
    loops = []
    for start in sorted(graph):
        seen, frontier = set(), set(graph[start])
        while frontier:
            area = frontier.pop()
            if area == start:
                loops.append(start)
                break
            if area not in seen:
                seen.add(area)
                frontier |= graph.get(area, set())
    assert loops == []


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
        if rel.startswith("cli/"):
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


def test_every_lazy_export_of_the_package_root_resolves():
    """The root re-exports on first use: a moved module must not leave a dead name behind."""
    assert [name for name in medseg_dfl._EXPORTS if getattr(medseg_dfl, name, None) is None] == []
    assert medseg_dfl.count_cells.__module__ == "medseg_dfl.engine.counting"
