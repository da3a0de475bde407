"""Arbitrary user values into bounded, JSON-safe builtins, never raising.

``extra`` fields and ``Client.log`` dictionaries may hold anything: objects whose ``__repr__``
raises, bytes, cycles, huge strings. Everything that reaches a backend passes through
:func:`to_json_safe` first, on the worker thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from itertools import islice
from typing import Any

MAX_STRING = 8192
MAX_ITEMS = 100
MAX_DEPTH = 8
#: Appended where a string was cut; ``n`` counts the characters left out.
CUT_MARKER = "...[cut {n} chars]"
#: Put in place of the items cut from a list (appended) or a mapping (under the key ``"..."``).
ITEMS_MARKER = "[{n} more items cut]"
_INT64 = 1 << 63
_TRAILING_CUT = re.compile(r"\.\.\.\[cut (\d+) chars\]\Z")


def safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        try:
            return f"<unrepresentable {type(value).__name__}>"
        except Exception:
            return "<unrepresentable>"


def clip(text: str, limit: int = MAX_STRING) -> str:
    """Cut ``text`` to ``limit`` characters plus a marker saying how many were cut.

    Cutting a string that already ends with a marker keeps one marker, whose count includes the
    characters cut before, so text cut twice (by the scrubber, then by the limits) says the truth.
    """
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    found = _TRAILING_CUT.search(text, max(0, len(text) - 40))
    if found is not None:
        body = text[: found.start()]
        if len(body) <= limit:
            return text
        cut = len(body) - limit + int(found.group(1))
    return text[:limit] + CUT_MARKER.format(n=cut)


def clean_str(text: str) -> str:
    """Replace lone surrogates, which no JSON encoder accepts as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def to_json_safe(value: Any, *, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-safe copy of ``value``: bounded depth, items and string length; cycles broken.

    Integers wider than 64 bits become a short description (JSON readers lose them anyway, and
    ``str()`` refuses past 4300 digits); a collection that fails to iterate becomes its ``repr``.
    """
    if type(value) is dict and depth == 0 and is_flat_json(value):
        return dict(value)  # the usual flat ``extra``: already JSON-safe, a copy is enough
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clean_str(clip(value))
    if isinstance(value, bytes | bytearray):
        return clip(bytes(value[: MAX_STRING + 1]).decode("utf-8", "replace"))
    is_collection = isinstance(value, Mapping | list | tuple | set | frozenset)
    if depth >= MAX_DEPTH:
        if is_collection:  # its repr could be huge, or recurse without end
            return f"<{type(value).__name__} nested deeper than {MAX_DEPTH} levels>"
        return clip(safe_repr(value), 200)
    if id(value) in seen:
        return "<cycle>"
    inner = seen | {id(value)}
    try:
        if isinstance(value, Mapping):
            result: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= MAX_ITEMS:
                    result["..."] = ITEMS_MARKER.format(n=len(value) - MAX_ITEMS)
                    break
                name = key if isinstance(key, str) else safe_repr(key)
                result[clean_str(clip(name, 200))] = to_json_safe(item, depth=depth + 1, seen=inner)
            return result
        if is_collection:
            items = list(islice(value, MAX_ITEMS + 1))
            out = [to_json_safe(item, depth=depth + 1, seen=inner) for item in items[:MAX_ITEMS]]
            if len(items) > MAX_ITEMS:
                out.append(ITEMS_MARKER.format(n=len(value) - MAX_ITEMS))
            return out
    except Exception:  # a collection whose iteration or len() raises: its repr says what it was
        pass
    return clean_str(clip(safe_repr(value)))


def is_flat_json(value: dict[Any, Any]) -> bool:
    """Whether ``value`` is a flat dict of short ASCII keys and short ASCII strings or plain
    numbers (the usual ``extra``): already what :func:`to_json_safe` would make of it."""
    if len(value) > MAX_ITEMS:
        return False
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or len(key) > 200 or not key.isascii():
            return False
        if kind is str:
            if len(item) > MAX_STRING or not item.isascii():
                return False
        elif kind is int:
            if not -_INT64 <= item < _INT64:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    return True
