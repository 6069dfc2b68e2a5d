"""Reading an event's data the same way in every family: a pydantic model (decoded events), a
dict (tests, tools) or any object with attributes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

_PLAIN = frozenset({str, bool, int, float, datetime})
_IS_MAPPING: dict[type, bool] = {}  # class -> is a Mapping (isinstance against an ABC is slow)


def field(data: Any, name: str, default: Any = None) -> Any:
    """``data``'s field ``name`` (``default`` when absent), an enum unwrapped to its value."""
    cls = data.__class__
    is_mapping = _IS_MAPPING.get(cls)
    if is_mapping is None:
        is_mapping = _IS_MAPPING[cls] = issubclass(cls, Mapping)
    v = data.get(name, default) if is_mapping else getattr(data, name, default)
    if v is None or v.__class__ in _PLAIN:
        return v
    return getattr(v, "value", v)
