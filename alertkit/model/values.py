"""Arbitrary user values into bounded, JSON-safe builtins, never raising.

``extra`` fields and ``Client.log`` dictionaries may hold anything: objects whose ``__repr__``
raises, bytes, cycles, huge strings, dates, decimals. Everything that reaches a backend passes
through :func:`to_json_safe` (at capture) or the limits (on the policy thread), which both turn
scalars into plain wire values with :func:`plain_scalar`, so a value keeps its meaning: a date
arrives as ISO 8601, not as the ``repr`` of a Python object.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import re
import uuid
from collections.abc import Mapping
from itertools import islice
from pathlib import PurePath
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
_ITEMS_CUT = re.compile(r"\[(\d+) more items cut\]\Z")
#: Integers wider than this many bits have more digits than a string keeps (``MAX_STRING``):
#: they are described, not printed (printing one of a million bits takes seconds).
MAX_INT_BITS = 27_000
_CHUNK = 10**4000  # under the 4300 digits ``str(int)`` prints by default
#: Returned by :func:`plain_scalar` for a value that is not a scalar (a collection, an object).
NOT_SCALAR: Any = object()


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


def items_cut(last: object) -> int:
    """How many items an earlier cut left out, if ``last`` is its marker (else 0): cutting a list
    cut before keeps one marker that counts both cuts."""
    if type(last) is not str or len(last) > 40:
        return 0
    found = _ITEMS_CUT.match(last)
    return int(found.group(1)) if found is not None else 0


def int_text(value: int) -> str:
    """All the decimal digits of a wide integer (``str()`` refuses past 4300 of them), or a
    description past :data:`MAX_INT_BITS`."""
    bits = value.bit_length()
    if bits > MAX_INT_BITS:
        return f"<int of {bits} bits>"
    sign, rest = ("-", -value) if value < 0 else ("", value)
    chunks: list[int] = []
    while True:
        rest, low = divmod(rest, _CHUNK)
        chunks.append(low)
        if not rest:
            break
    return sign + str(chunks[-1]) + "".join(str(c).zfill(4000) for c in reversed(chunks[:-1]))


def plain_scalar(value: Any) -> Any:
    """``value`` as a plain wire scalar (``None``, ``bool``, ``int`` of 64 bits, finite ``float``,
    exact ``str``, not yet cut), or :data:`NOT_SCALAR` for a collection or another object.

    Subclasses become their base type (``markupsafe.Markup`` a plain ``str``, which JSON encoders
    take), read through the base type's own method so that an override cannot raise. Dates and
    times become ISO 8601, a ``Decimal`` its digits, UUIDs and paths their text, an enum its value,
    an integer beyond 64 bits its decimal digits, NaN and infinity their name. Never raises:
    an object whose type checks or conversion raise is :data:`NOT_SCALAR` too.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_INT64 <= value < _INT64 else int_text(value)
    if kind is float:
        return value if math.isfinite(value) else str(value)
    try:
        return _plain_object(value)
    except Exception:  # e.g. a __getattribute__ that raises makes isinstance() raise
        return NOT_SCALAR


def _plain_object(value: Any) -> Any:
    value = enum_value(value)
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return plain_scalar(int.__int__(value))
    if isinstance(value, float):
        return plain_scalar(float.__float__(value))
    if isinstance(value, datetime.date | datetime.time):
        # datetime before date: it is one. The base class's isoformat, not an override.
        if isinstance(value, datetime.datetime):
            return datetime.datetime.isoformat(value)
        if isinstance(value, datetime.date):
            return datetime.date.isoformat(value)
        return datetime.time.isoformat(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal.__str__(value)
    if isinstance(value, uuid.UUID):
        return uuid.UUID.__str__(value)
    if isinstance(value, PurePath):
        return PurePath.__str__(value)
    return NOT_SCALAR


def enum_value(value: Any) -> Any:
    """The value of an enum member (followed through members whose value is a member)."""
    for _ in range(4):
        if not isinstance(value, enum.Enum):
            break
        value = value._value_
    return value


def clean_str(text: str) -> str:
    """Replace lone surrogates, which no JSON encoder accepts as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def to_json_safe(value: Any, *, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-safe copy of ``value``: bounded depth, items and string length; cycles broken.

    Scalars become plain wire values (:func:`plain_scalar`); a collection that fails to iterate,
    or an object whose type checks raise, becomes its ``repr``.
    """
    if type(value) is dict and depth == 0 and is_flat_json(value):
        return dict(value)  # the usual flat ``extra``: already JSON-safe, a copy is enough
    return _json_safe(value, depth, seen)


def _json_safe(value: Any, depth: int, seen: frozenset[int]) -> Any:
    kind = type(value)
    try:
        if kind is not dict and kind is not list:  # the usual containers need no scalar checks
            plain = plain_scalar(value)
            if plain is not NOT_SCALAR:
                return clean_str(clip(plain)) if type(plain) is str else plain
            value = enum_value(value)
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
        if isinstance(value, Mapping):
            result: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= MAX_ITEMS:
                    result["..."] = ITEMS_MARKER.format(n=len(value) - MAX_ITEMS)
                    break
                result[key_text(key, 200)] = _json_safe(item, depth + 1, inner)
            return result
        if is_collection:
            items = list(islice(value, MAX_ITEMS + 1))
            out = [_json_safe(item, depth + 1, inner) for item in items[:MAX_ITEMS]]
            if len(items) > MAX_ITEMS:
                out.append(ITEMS_MARKER.format(n=len(value) - MAX_ITEMS))
            return out
    except Exception:  # iteration or len() raised, or a type check (a hostile __getattribute__)
        pass
    return clean_str(clip(safe_repr(value)))


def key_text(key: Any, limit: int) -> str:
    """A mapping key as a clean, exact ``str`` of at most ``limit`` characters (other keys: their
    ``repr``, as JSON objects have text keys only)."""
    if type(key) is not str:
        key = str.__str__(key) if isinstance(key, str) else safe_repr(key)
    return clean_str(clip(key, limit))


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
