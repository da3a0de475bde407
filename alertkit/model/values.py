"""Arbitrary user values into bounded, JSON-safe builtins, never raising.

``extra`` fields and ``Client.log`` dictionaries may hold anything: objects whose ``__repr__``
raises, bytes, cycles, huge strings, dates, decimals. Everything that reaches a backend passes
through the one walk of :class:`Bounds`: at capture (:func:`to_json_safe`) and again on the policy
thread (the limits are a ``Bounds``). It turns scalars into plain wire values with
:func:`plain_scalar`, so a value keeps its meaning: a date arrives as ISO 8601, not as the ``repr``
of a Python object.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import suppress
from itertools import compress, islice
from operator import is_, not_
from pathlib import PurePath
from typing import Any

#: Characters kept of a string (``details`` values, wire fields, tags, link texts ...).
MAX_STRING = 8192
#: Items kept of a list or mapping.
MAX_ITEMS = 100
#: Levels of nesting kept in structured data (``details``, ``payload``, the request log).
MAX_DEPTH = 8
#: Characters in all of one structure (``details``; ``payload`` and the request log each alike).
MAX_TOTAL = 256 * 1024
#: Characters kept of a mapping key.
MAX_KEY = 200
#: Put in place of what is nested deeper than ``n`` levels.
DEPTH_MARKER = "[nested deeper than {n} levels: cut]"
#: Appended where a string was cut; ``n`` counts the characters left out.
CUT_MARKER = "...[cut {n} chars]"
#: Put in place of the items cut from a list (appended) or a mapping (under the key ``"..."``).
ITEMS_MARKER = "[{n} more items cut]"
#: Integers from ``-INT64`` up to ``INT64 - 1`` (64 bits) are sent as numbers, others as text.
INT64 = 1 << 63
_TRAILING_CUT = re.compile(r"\.\.\.\[cut (\d+) chars\]\Z")
_ITEMS_CUT = re.compile(r"\[(\d+) more items cut\]\Z")
#: Integers wider than this many bits have more digits than a string keeps (``MAX_STRING``):
#: they are described, not printed (printing one of a million bits takes seconds).
MAX_INT_BITS = 27_000
_CHUNK = 10**4000  # under the 4300 digits ``str(int)`` prints by default
#: Where a sequence may begin in the one before it, for :func:`carried_over` (a few records
#: logged between two errors).
CARRY_PROBES = 16
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
        return value if -INT64 <= value < INT64 else int_text(value)
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


class Bounds:
    """The one walk that makes user data plain, JSON-safe and bounded, and its limits.

    Used at capture (:func:`to_json_safe`, with the default bounds) and on the policy thread
    (:class:`alertkit.policy.limits.Limits` is a ``Bounds``), so a rule added here holds in both.
    :meth:`data` returns the very object it was given when nothing in it needs to change: the
    fast path is the rule itself, not a second copy of it.
    """

    # The defaults; :class:`alertkit.policy.limits.Limits` sets its own on the instance.
    max_string: int = MAX_STRING
    max_items: int = MAX_ITEMS
    max_depth: int = MAX_DEPTH
    max_total: int = MAX_TOTAL

    def data(self, value: Any, *, copy: bool = False) -> Any:
        """``value`` bounded and JSON-safe: the same object when it already is (``copy``: new
        containers all the same, a snapshot later changes by the application do not reach)."""
        return self._data(value, 0, frozenset(), [self.max_total], copy)

    def _data(
        self, value: Any, depth: int, path: frozenset[int], budget: list[int], copy: bool
    ) -> Any:
        try:
            kind = type(value)
            if kind is not dict and kind is not list:  # the usual containers: no scalar checks
                plain = plain_scalar(value)
                if plain is not NOT_SCALAR:
                    return self._string(plain, budget) if type(plain) is str else plain
                value = enum_value(value)
                if isinstance(value, bytes | bytearray):
                    raw = bytes(value[: self.max_string + 1])
                    cut = len(value) - len(raw)
                    return self._string(raw.decode("utf-8", "replace"), budget, cut)
            if depth >= self.max_depth:
                return DEPTH_MARKER.format(n=self.max_depth)
            if id(value) in path:
                return "<cycle>"
            if kind is dict or isinstance(value, Mapping):  # the exact type first: no ABC check
                return self._mapping(value, depth, path, budget, copy)
            if kind is list or isinstance(value, list | tuple | set | frozenset):
                return self._sequence(value, depth, path | {id(value)}, budget, copy)
        except Exception:  # a user collection that fails to iterate, a hostile type check
            pass
        return self._string(safe_repr(value), budget)

    def _string(self, text: str, budget: list[int], already_cut: int = 0) -> str:
        limit = max(0, min(self.max_string, budget[0]))
        if already_cut:
            text += CUT_MARKER.format(n=already_cut)
        budget[0] -= min(len(text), limit)
        if len(text) <= limit and text.isascii():
            return text  # nothing to cut, no surrogate possible
        return clean_str(clip(text, limit))

    def _mapping(
        self,
        value: Mapping[Any, Any],
        depth: int,
        path: frozenset[int],
        budget: list[int],
        copy: bool,
    ) -> dict[str, Any]:
        # Built only from the first item that changes (or at once, for a copy or a non-dict).
        result: dict[str, Any] | None = {} if copy or type(value) is not dict else None
        size = len(value)
        max_key = min(MAX_KEY, self.max_string)
        # A mapping cut before, within the limits, ends with its marker: kept, not cut again.
        keep = self.max_items + (size == self.max_items + 1 and items_cut(value.get("...")) > 0)
        max_string = self.max_string
        left = budget[0]  # the budget in a local (this loop runs for every item of every dict)
        inner: frozenset[int] | None = None  # the path below this mapping, made when needed
        try:
            for index, (key, item) in enumerate(value.items()):
                if index >= keep or left <= 0:
                    if result is None:
                        result = dict(islice(value.items(), index))
                    # A mapping cut before (at capture) says under "..." how many it lost then.
                    earlier = items_cut(value.get("...")) if "..." not in result else 0
                    result["..."] = ITEMS_MARKER.format(n=size - index - (earlier > 0) + earlier)
                    break
                if type(key) is str and len(key) <= max_key and key.isascii():
                    name = key
                else:
                    name = key_text(key, max_key)
                left -= len(name)
                kind = type(item)  # plain values inline: no call per item of a flat dict
                if kind is str and len(item) <= max_string and len(item) <= left and item.isascii():
                    left -= len(item)
                    new = item
                elif (kind is int and -INT64 <= item < INT64) or item is None or kind is bool:
                    new = item
                else:
                    if inner is None:
                        inner = path | {id(value)}
                    budget[0] = left
                    new = self._data(item, depth + 1, inner, budget, copy)
                    left = budget[0]
                if result is None and (new is not item or name is not key):
                    result = dict(islice(value.items(), index))
                if result is not None:
                    result[name] = new
        finally:
            budget[0] = left
        return value if result is None else result  # type: ignore[return-value]

    def _sequence(
        self, value: Any, depth: int, path: frozenset[int], budget: list[int], copy: bool
    ) -> list[Any]:
        result: list[Any] | None = [] if copy or type(value) is not list else None
        size = len(value)
        # A list cut before, within the limits, ends with its marker: kept, not cut again.
        last = value[-1] if type(value) is list and value else None
        keep = self.max_items + (size == self.max_items + 1 and items_cut(last) > 0)
        for index, item in enumerate(value):
            if index >= keep or budget[0] <= 0:
                if result is None:
                    result = value[:index]
                # A list cut before (at capture) ends with a marker counting what it lost then.
                earlier = items_cut(value[-1]) if type(value) is list else 0
                result.append(ITEMS_MARKER.format(n=size - index - (earlier > 0) + earlier))
                break
            new = self._data(item, depth + 1, path, budget, copy)
            if result is None and new is not item:
                result = value[:index]
            if result is not None:
                result.append(new)
        return value if result is None else result


_DEFAULT = Bounds()


def to_json_safe(value: Any, *, copy: bool = True) -> Any:
    """A bounded, JSON-safe copy of ``value`` (the default :class:`Bounds`; cycles broken).

    Scalars become plain wire values (:func:`plain_scalar`); a collection that fails to iterate,
    or an object whose type checks raise, becomes its ``repr``. ``copy=False`` returns ``value``
    itself when it is already plain and bounded (for a dict the caller just built).
    """
    return _DEFAULT.data(value, copy=copy)


def key_text(key: Any, limit: int) -> str:
    """A mapping key as a clean, exact ``str`` of at most ``limit`` characters (other keys: their
    ``repr``, as JSON objects have text keys only)."""
    if type(key) is not str:
        key = str.__str__(key) if isinstance(key, str) else safe_repr(key)
    return clean_str(clip(key, limit))


def carried_over(last: Sequence[Any], items: Sequence[Any]) -> int:
    """How many of the first ``items`` are the last items of ``last``, the very same objects, in
    order: consecutive trails of breadcrumbs share all but the crumbs added since (0: none).

    Compared by identity, in C (an application's ``__eq__`` is never called); where ``items``
    begins in ``last`` is looked for among the first :data:`CARRY_PROBES` of ``last`` only.
    """
    noted = _NOTED.get(id(items))
    if noted is not None and noted[0] is items and noted[1] is last:
        return noted[2]  # its maker said so (:func:`note_carried`): no comparison at all
    if not last or not items:
        return 0
    first = items[0]
    for start in range(min(len(last), CARRY_PROBES)):
        if last[start] is first:
            count = len(last) - start
            if count <= len(items) and all(map(is_, items[:count], last[start:])):
                return count
    return 0


def note_carried(items: Sequence[Any], last: Sequence[Any], count: int) -> None:
    """Say that the first ``count`` of ``items`` are the last of ``last``, as the code that just
    built ``items`` from ``last`` knows: :func:`carried_over` then answers for this pair without
    comparing (the scrubber and the limits each ask about every trail). Both are held while
    noted, so that the id stays theirs; the oldest of :data:`NOTED_SIZE` notes is forgotten."""
    if len(_NOTED) >= NOTED_SIZE:
        with suppress(KeyError, RuntimeError, StopIteration):  # another thread forgot it first
            del _NOTED[next(iter(_NOTED))]
    _NOTED[id(items)] = (items, last, count)


#: Carry-overs noted by their makers (:func:`note_carried`), by the id of the new sequence.
NOTED_SIZE = 64
_NOTED: dict[int, tuple[Sequence[Any], Sequence[Any], int]] = {}


class KnownObjects:
    """Objects a transform found it has nothing to change in, remembered by identity.

    Consecutive errors share most of their breadcrumbs (the very same dicts), so the scrubber and
    the limits look at a crumb once. Each object is held while it is remembered, so that its id
    stays its own (an id is reused only once its object is gone); the oldest is forgotten first.
    The sequence last found to need no change is held too: a next one that carries it over
    (:func:`carried_over`) has only its new items looked up. All of it runs in C: no Python call
    per known crumb.
    """

    __slots__ = ("_held", "_last", "_size")

    def __init__(self, size: int) -> None:
        self._held: OrderedDict[int, Any] = OrderedDict()
        self._last: Sequence[Any] = ()
        self._size = size

    def unknown(self, items: Sequence[Any]) -> list[Any]:
        """The items not remembered, in order (usually none, or the newest crumb)."""
        carried = carried_over(self._last, items)
        rest = items[carried:] if carried else items
        return list(compress(rest, map(not_, map(self._held.__contains__, map(id, rest)))))

    def __contains__(self, item: object) -> bool:
        return id(item) in self._held

    def add(self, item: object) -> None:
        """Remember ``item`` (held until it is the oldest of ``size``)."""
        held = self._held
        if len(held) >= self._size:
            with suppress(KeyError):  # a processor two clients share: another thread was first
                held.popitem(last=False)  # O(1): a dict would scan past what it forgot before
        held[id(item)] = item

    def settled(self, items: Sequence[Any]) -> None:
        """Say that every one of ``items`` is known now (none needed a change): the next call
        of :meth:`unknown` looks up only the items added to them."""
        self._last = items
