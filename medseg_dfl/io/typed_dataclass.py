"""Plain values (parsed YAML) -> a typed dataclass, checked against its annotations.

Unknown keys, wrong types and values outside a field's ``choices`` metadata are rejected with the
full key path (``train.epochs: expected an integer, got 'ten'``), so a typo is never silently
ignored. ``medseg_dfl.config`` builds its :class:`~medseg_dfl.config.Config` with it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

__all__ = ["build_dataclass"]

# A number in exponent notation without a dot (1e-3, 3E-5): plain YAML 1.1 leaves it a string.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, path)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    return _convert_scalar(value, tp, path)


def _convert_scalar(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against a plain annotation (bool, int, float, str, Any)."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 3e-5 (no dot) as a string; everyone means the number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")  # programming error


def build_dataclass(cls: type, values: dict[str, Any], path: str = "") -> Any:
    """An instance of the dataclass ``cls`` from plain ``values`` (parsed YAML), nested dataclasses
    included; ``ValueError`` naming the key path for an unknown key, a wrong type or a value outside a
    field's ``choices`` metadata. Missing keys take their defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ValueError(
            f"unknown config key {where}{unknown[0]!s}; allowed keys{' under ' + path if path else ''}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        key_path = f"{path}.{name}" if path else name
        converted = _convert(value, hints[name], key_path)
        choices = fields[name].metadata.get("choices")
        if choices is not None and converted not in choices:
            raise ValueError(f"{key_path}: {converted!r} is not one of {', '.join(map(str, choices))}")
        kwargs[name] = converted
    return cls(**kwargs)
