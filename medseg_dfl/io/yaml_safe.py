"""Reading YAML that a stranger may have written: bounded, and without silent last-wins keys.

:func:`load_yaml_text` is PyYAML's safe loader (no Python tags) plus three limits checked on the
parser's *event stream* (iterative, so no recursion before the check):

- size: at most :data:`MAX_YAML_BYTES` of text;
- nesting: at most :data:`MAX_YAML_DEPTH` levels, counting what an alias (``*name``) expands to;
- nodes: at most :data:`MAX_YAML_NODES` scalars and collections once every alias is expanded.

Anchors let a 1 KB file stand for 10**9 values ("billion laughs"): PyYAML builds them as shared
objects cheaply, but anything that walks the result (the config checks, ``dataclasses.asdict``,
``yaml.dump``) runs for minutes. A config has a few hundred nodes and is 5 levels deep, so the
limits never touch a real one. A key given twice in one mapping is refused (PyYAML keeps the last
silently). Every refusal is a ``ValueError`` of one line.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "load_yaml_text"]

MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000

_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_events(text: str) -> None:
    """Depth and expanded node count of ``text``'s events (see module docstring)."""
    nodes, depth = 0, 0
    # anchor -> (expanded nodes, depth below its own node); open collections: (anchor, nodes at start, depth)
    anchors: dict[str, tuple[int, int]] = {}
    open_nodes: list[tuple[str | None, int, int]] = []
    deepest_inside: list[int] = []  # per open collection: the deepest level reached inside it
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        added, reach = 0, depth
        if isinstance(event, yaml.AliasEvent):
            size, below = anchors.get(event.anchor, (1, 0))
            added, reach = size, depth + below
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, _OPEN):
            added, depth = 1, depth + 1
            reach = depth
            open_nodes.append((event.anchor, nodes, depth))
            deepest_inside.append(depth)
        elif isinstance(event, _CLOSE) and open_nodes:
            anchor, start, level = open_nodes.pop()
            inner = deepest_inside.pop()
            if anchor:
                anchors[anchor] = (nodes - start, inner - level + 1)
            if deepest_inside:
                deepest_inside[-1] = max(deepest_inside[-1], inner)
            depth -= 1
        nodes += added
        if deepest_inside:
            deepest_inside[-1] = max(deepest_inside[-1], reach)
        if reach > MAX_YAML_DEPTH:
            raise ValueError(f"nested more than {MAX_YAML_DEPTH} levels deep (aliases expanded); a config is a few "
                             "levels deep")  # fmt: skip
        if nodes > MAX_YAML_NODES:
            raise ValueError(f"more than {MAX_YAML_NODES:,} values once its aliases (*name) are expanded; a config "
                             "has a few hundred")  # fmt: skip


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class reports it
                break
            if duplicate:
                mark = key_node.start_mark
                raise ValueError(f"key {key!r} is given twice in one mapping (line {mark.line + 1}); "
                                 "remove one of them")  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """The value of YAML ``text`` (see module docstring); ``ValueError`` (one line) when it is not valid
    YAML, too large, too deep, or repeats a key. Callers prefix the file or flag it came from."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise ValueError(f"larger than {MAX_YAML_BYTES:,} bytes; a config is a few KB")
    try:
        _check_events(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ValueError(f"not valid YAML ({' '.join(str(err).split())})") from err
