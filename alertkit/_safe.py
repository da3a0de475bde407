"""Arbitrary user values into bounded, JSON-safe builtins, never raising.

``extra`` fields and ``Client.log`` dictionaries may hold anything: objects whose ``__repr__``
raises, bytes, cycles, huge strings. Everything that reaches a backend passes through
:func:`to_json_safe` first, on the worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_STRING = 8192
MAX_ITEMS = 100
MAX_DEPTH = 8
CUT_MARKER = "...[cut {n} chars]"


def safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        try:
            return f"<unrepresentable {type(value).__name__}>"
        except Exception:
            return "<unrepresentable>"


def clip(text: str, limit: int = MAX_STRING) -> str:
    """Cut ``text`` to about ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + CUT_MARKER.format(n=len(text) - limit)


def clean_str(text: str) -> str:
    """Replace lone surrogates, which no JSON encoder accepts as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def to_json_safe(value: Any, *, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-safe copy of ``value``: bounded depth, items and string length; cycles broken."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clean_str(clip(value))
    if isinstance(value, bytes | bytearray):
        return clip(bytes(value[: MAX_STRING + 1]).decode("utf-8", "replace"))
    if depth >= MAX_DEPTH:
        return clip(safe_repr(value), 200)
    if id(value) in seen:
        return "<cycle>"
    inner = seen | {id(value)}
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                result["..."] = f"[{len(value) - MAX_ITEMS} more items cut]"
                break
            name = key if isinstance(key, str) else safe_repr(key)
            result[clean_str(clip(name, 200))] = to_json_safe(item, depth=depth + 1, seen=inner)
        return result
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)[: MAX_ITEMS + 1]
        out = [to_json_safe(item, depth=depth + 1, seen=inner) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out.append(f"[{len(value) - MAX_ITEMS} more items cut]")
        return out
    return clean_str(clip(safe_repr(value)))
