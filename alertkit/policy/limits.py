"""Every string and collection of an event bounded: the :class:`Limits` processor.

Runs on the policy thread after the :class:`~alertkit.policy.scrub.Scrubber`. What it cuts it marks:

* a string keeps its first ``max_string`` characters (``max_message`` for the message, the
  traceback text and the template) and ends with ``...[cut N chars]``;
* a list keeps ``max_items`` items and ends with ``"[N more items cut]"``; a mapping keeps
  ``max_items`` keys and says the same under the key ``"..."``;
* a value nested deeper than ``max_depth`` becomes ``"[nested deeper than D levels: cut]"``;
* once ``details`` (likewise ``payload``, the request log) holds ``max_total`` characters, the
  rest is cut with the same markers;
* a stack trace keeps ``max_exceptions`` exceptions (then an entry of type ``"[cut]"`` saying
  how many more there were) and ``max_frames`` frames of each, the oldest and the newest half,
  with a frame named ``"[N frames cut]"`` between them.

It also makes the event safe to encode whatever the application put in it: lone surrogates are
replaced, values of the wrong type become their ``str`` (or are left out when that makes no
sense), subclasses of ``str``/``int``/``float`` (``markupsafe.Markup``) become the plain type, and
in the data dates, decimals, UUIDs, paths, enums and wide integers become the plain values of
:func:`alertkit.model.values.plain_scalar` (NaN and infinity strings, left out of the wire event), other
objects their ``repr``. Cycles become ``"<cycle>"``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

import msgspec
import msgspec.inspect as mi

from alertkit.guard import report_internal_error
from alertkit.model.event import AppEvent, Envelope, InnerStackTrace, StackTraceLine
from alertkit.model.stacktrace import safe_str
from alertkit.model.values import (
    CUT_MARKER,
    ITEMS_MARKER,
    NOT_SCALAR,
    clean_str,
    clip,
    enum_value,
    items_cut,
    key_text,
    plain_scalar,
    safe_repr,
)

#: Characters kept of a string (``details`` values, wire fields, tags, link texts ...).
MAX_STRING = 8192
#: Characters kept of the event message, the traceback text and the message template.
MAX_MESSAGE = 32768
#: Items kept of a list or mapping.
MAX_ITEMS = 100
#: Levels of nesting kept in ``details``, ``payload`` and the request log.
MAX_DEPTH = 8
#: Characters in all of ``details`` (and, each on its own, ``payload`` and the request log).
MAX_TOTAL = 256 * 1024
#: Frames kept per exception of a stack trace.
MAX_FRAMES = 100
#: Exceptions kept of a chain (``raise ... from ...``).
MAX_EXCEPTIONS = 10
#: Characters kept of a frame's file name and function name, of an exception's type name, and of
#: each ``contextTags`` entry.
MAX_NAME = 512

DEPTH_MARKER = "[nested deeper than {n} levels: cut]"
FRAMES_MARKER = "[{n} frames cut]"
EXCEPTIONS_MARKER = "[{n} more exceptions cut]"
_INT64 = 1 << 63
#: The types ``Envelope.links`` and ``images`` may have as they are (empty by default: a tuple).
_SEQUENCES = (list, tuple)


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


class Limits:
    """A pipeline processor that bounds an envelope and makes it JSON-safe; never raises.

    Args:
        max_string: characters kept of a string.
        max_message: characters kept of the message, traceback text and template.
        max_items: items kept of a list or mapping.
        max_depth: nesting levels kept in structured data (at most 100).
        max_frames: frames kept per exception.
        max_exceptions: exceptions kept of a chain.
        max_total: characters kept in all of ``details`` (``payload``, request log: each alike).

    Raises:
        TypeError: a limit is not a whole number.
        ValueError: a limit is not positive (or ``max_depth`` is above 100).
    """

    keeps_types = True  # cuts values to values of the same type (see Envelope.typed)

    def __init__(
        self,
        *,
        max_string: int = MAX_STRING,
        max_message: int = MAX_MESSAGE,
        max_items: int = MAX_ITEMS,
        max_depth: int = MAX_DEPTH,
        max_frames: int = MAX_FRAMES,
        max_exceptions: int = MAX_EXCEPTIONS,
        max_total: int = MAX_TOTAL,
    ) -> None:
        values = {
            "max_string": max_string,
            "max_message": max_message,
            "max_items": max_items,
            "max_depth": max_depth,
            "max_frames": max_frames,
            "max_exceptions": max_exceptions,
            "max_total": max_total,
        }
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if max_depth > 100:
            raise ValueError(f"max_depth must be at most 100, got {max_depth}")
        self.max_string = max_string
        self.max_message = max_message
        self.max_items = max_items
        self.max_depth = max_depth
        self.max_frames = max_frames
        self.max_exceptions = max_exceptions
        self.max_total = max_total
        self._event_plan: list[tuple[str, Callable[[Any], Any]]] | None = None

    @property
    def longest(self) -> int:
        """The longest string these limits keep."""
        return max(self.max_string, self.max_message, self.max_total)

    def __repr__(self) -> str:
        return (
            f"Limits(max_string={self.max_string}, max_message={self.max_message}, "
            f"max_items={self.max_items}, max_depth={self.max_depth}, "
            f"max_frames={self.max_frames}, max_exceptions={self.max_exceptions}, "
            f"max_total={self.max_total})"
        )

    # -- strings and data ----------------------------------------------------------------------------

    def text(self, value: Any, limit: int | None = None) -> str:
        """``value`` as a clean string of at most ``limit`` (default ``max_string``) characters."""
        if type(value) is str:
            text = value
        else:  # a str subclass (markupsafe.Markup) as a plain str, which every encoder takes
            plain = plain_scalar(value)
            text = plain if type(plain) is str else safe_str(value)
        return clean_str(clip(text, self.max_string if limit is None else limit))

    def data(self, value: Any) -> Any:
        """A bounded, JSON-safe copy of ``value`` (see the module docs for the markers)."""
        return self._data(value, 0, frozenset(), _Budget(self.max_total))

    def _data(self, value: Any, depth: int, path: frozenset[int], budget: _Budget) -> Any:
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
            inner = path | {id(value)}
            if isinstance(value, Mapping):
                return self._mapping(value, depth, inner, budget)
            if isinstance(value, list | tuple | set | frozenset):
                return self._sequence(value, depth, inner, budget)
        except Exception:  # a user collection that fails to iterate, a hostile type check
            pass
        return self._string(safe_repr(value), budget)

    def _string(self, text: str, budget: _Budget, already_cut: int = 0) -> str:
        limit = max(0, min(self.max_string, budget.left))
        if already_cut:
            text += CUT_MARKER.format(n=already_cut)
        result = clean_str(clip(text, limit))
        budget.left -= min(len(text), limit)
        return result

    def _mapping(
        self, value: Mapping[Any, Any], depth: int, path: frozenset[int], budget: _Budget
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        size = len(value)
        for index, (key, item) in enumerate(value.items()):
            if index >= self.max_items or budget.left <= 0:
                # A mapping cut before (at capture) says under "..." how many it lost then.
                earlier = items_cut(value.get("...")) if "..." not in result else 0
                result["..."] = ITEMS_MARKER.format(n=size - index - (earlier > 0) + earlier)
                break
            name = key_text(key, min(200, self.max_string))
            budget.left -= len(name)
            result[name] = self._data(item, depth + 1, path, budget)
        return result

    def _sequence(self, value: Any, depth: int, path: frozenset[int], budget: _Budget) -> list[Any]:
        result: list[Any] = []
        size = len(value)
        for index, item in enumerate(value):
            if index >= self.max_items or budget.left <= 0:
                # A list cut before (at capture) ends with a marker counting what it lost then.
                earlier = items_cut(value[-1]) if type(value) is list else 0
                result.append(ITEMS_MARKER.format(n=size - index - (earlier > 0) + earlier))
                break
            result.append(self._data(item, depth + 1, path, budget))
        return result

    # -- the wire event ------------------------------------------------------------------------------

    def event(self, event: AppEvent) -> AppEvent:
        """The wire event with every field of its declared type and within the limits: the same
        object when nothing had to change, else a copy."""
        if self._event_plan is None:
            self._event_plan = self._plan(_event_type())
        fitted: AppEvent = self._apply(event, AppEvent, self._event_plan)
        return fitted

    def _fast_text(self, value: Any, limit: int) -> str:
        if type(value) is str and len(value) <= limit and value.isascii():
            return value  # nothing to cut, no surrogate possible
        return self.text(value, limit)

    def _plan(self, info: mi.StructType) -> list[tuple[str, Callable[[Any], Any]]]:
        """One fitting function per field, built once from the struct's declared types."""
        plan: list[tuple[str, Callable[[Any], Any]]] = []
        for field in info.fields:
            if field.name == "event_stacktrace":
                plan.append((field.name, self._stacktrace))
            elif field.name == "event_message":
                plan.append((field.name, lambda value: self._fast_text(value, self.max_message)))
            elif field.name == "context_tags":
                plan.append((field.name, self._context_tags))
            else:
                plan.append((field.name, self._fitter(field.type, field.required)))
        return plan

    @staticmethod
    def _apply(obj: Any, cls: type[Any], plan: list[tuple[str, Callable[[Any], Any]]]) -> Any:
        values: dict[str, Any] = {}
        changed = False
        for name, fit in plan:
            old = getattr(obj, name, None)
            try:
                new = fit(old)
            except Exception:  # a hostile object (its type check raises): as if it were unset
                new = fit(None)
            values[name] = new
            changed = changed or new is not old
        return cls(**values) if changed else obj

    def _fitter(self, kind: Any, required: bool) -> Callable[[Any], Any]:
        """A function that turns any value into one of type ``kind`` (or None, if allowed)."""
        while isinstance(kind, mi.Metadata):
            kind = kind.type
        if isinstance(kind, mi.UnionType):
            choices = [t for t in kind.types if not isinstance(t, mi.NoneType)]
            if not choices:
                return lambda value: None
            inner = self._fitter(choices[0], not kind.includes_none)
            if not kind.includes_none:
                return inner
            return lambda value: None if value is None else inner(value)
        if isinstance(kind, mi.StrType):
            return lambda value: self._fast_text(value, self.max_string)
        if isinstance(kind, mi.IntType):
            default_int = 0 if required else None

            def fit_int(value: Any) -> Any:
                if type(value) is int and -_INT64 <= value < _INT64:
                    return value
                plain = plain_scalar(value)  # an int subclass (IntEnum) as a plain int
                return plain if type(plain) is int else default_int

            return fit_int
        if isinstance(kind, mi.FloatType):
            default_float = 0.0 if required else None

            def fit_float(value: Any) -> Any:
                if type(value) is float and math.isfinite(value):
                    return value
                number = plain_scalar(value)  # subclasses as their base type, NaN as "nan"
                return float(number) if type(number) in (int, float) else default_float

            return fit_float
        if isinstance(kind, mi.LiteralType):
            allowed = frozenset(kind.values)

            def fit_literal(value: Any) -> Any:
                # Compared as plain scalars: a list is unhashable, an object's __eq__ may raise.
                plain = plain_scalar(value)
                return plain if type(plain) in (str, int) and plain in allowed else None

            return fit_literal
        if isinstance(kind, mi.ListType):
            item = self._fitter(kind.item_type, True)
            limit = self.max_items

            def fit_list(value: Any) -> Any:
                if not isinstance(value, list | tuple):
                    return None
                return [item(element) for element in value[:limit]]

            return fit_list
        if isinstance(kind, mi.StructType):
            plan = self._plan(kind)
            cls = kind.cls
            return lambda value: self._apply(value, cls, plan) if isinstance(value, cls) else None
        return lambda value: None

    def _context_tags(self, tags: Any) -> list[str] | None:
        if not isinstance(tags, list | tuple):
            return None
        limit = min(MAX_NAME, self.max_string)
        result = [self._fast_text(tag, limit) for tag in tags[: self.max_items]]
        if len(tags) > self.max_items:
            result.append(ITEMS_MARKER.format(n=len(tags) - self.max_items))
        return tags if _unchanged(tags, result) else result

    def _stacktrace(self, stack: Any) -> list[InnerStackTrace] | None:
        if not isinstance(stack, list | tuple):
            return None
        entries = [entry for entry in stack if isinstance(entry, InnerStackTrace)]
        result = [self._exception(entry) for entry in entries[: self.max_exceptions]]
        if len(entries) > self.max_exceptions:
            more = len(entries) - self.max_exceptions
            result.append(InnerStackTrace(type="[cut]", message=EXCEPTIONS_MARKER.format(n=more)))
        return stack if _unchanged(stack, result) else result

    def _exception(self, entry: InnerStackTrace) -> InnerStackTrace:
        lines = entry.trace_lines if isinstance(entry.trace_lines, list | tuple) else []
        fitted = [self._frame(line) for line in lines if isinstance(line, StackTraceLine)]
        frames: list[StackTraceLine] | None = fitted
        if len(fitted) > self.max_frames:
            head = self.max_frames // 2
            tail = self.max_frames - head
            marker = StackTraceLine(function=FRAMES_MARKER.format(n=len(fitted) - self.max_frames))
            frames = [*fitted[:head], marker, *fitted[len(fitted) - tail :]]
        elif entry.trace_lines is None or _unchanged(lines, fitted):
            frames = entry.trace_lines  # None, or the caller's list: nothing in it needs cutting
        kind = None if entry.type is None else self._fast_text(entry.type, MAX_NAME)
        message = None if entry.message is None else self._fast_text(entry.message, self.max_string)
        if frames is entry.trace_lines and kind is entry.type and message is entry.message:
            return entry
        return InnerStackTrace(type=kind, message=message, trace_lines=frames)

    def _frame(self, line: StackTraceLine) -> StackTraceLine:
        short = min(MAX_NAME, self.max_string)
        function, number, file = line.function, line.line, line.file
        fitted_function = None if function is None else self._fast_text(function, short)
        fitted_file = None if file is None else self._fast_text(file, short)
        number_ok = number is None or (type(number) is int and -_INT64 <= number < _INT64)
        if fitted_function is function and fitted_file is file and number_ok:
            return line
        return StackTraceLine(
            function=fitted_function, line=number if number_ok else None, file=fitted_file
        )

    # -- the processor -------------------------------------------------------------------------------

    def __call__(self, envelope: Envelope) -> Envelope | None:
        """A bounded copy of ``envelope``; None (the event is dropped) when it has no wire event."""
        if not isinstance(envelope.event, AppEvent):
            return None
        try:
            fits = self._fits(envelope)
        except Exception:  # anything odd (it raised) is left to the thorough path
            fits = False
        if fits:
            return envelope  # the common case: nothing to cut, no copy
        try:
            return self._fit(envelope)
        except Exception as exc:  # a bug here must not stop the alert: send the bare event
            report_internal_error(exc)
            return Envelope(
                event=self.event(envelope.event),
                kind=envelope.kind if isinstance(envelope.kind, str) else "event",
                event_id=self.text(envelope.event_id, 200),
                levelno=envelope.levelno if isinstance(envelope.levelno, int) else 40,
                created=envelope.created if isinstance(envelope.created, float) else 0.0,
            )

    def _fits(self, envelope: Envelope) -> bool:
        """Whether ``envelope`` is already within every limit, with every wire field of its
        declared type: a quick check (msgspec in C for the types) so that ordinary events skip
        the field-by-field copy of :meth:`_fit`."""
        event = envelope.event
        template, exc_text = envelope.template, envelope.exc_text
        max_message = self.max_message
        # The texts that come from the application first, in Python: encoding an event that
        # holds a huge string would cost what the limits are there to prevent.
        if (
            len(event.event_message) > max_message
            or (template is not None and len(template) > max_message)
            or (exc_text is not None and len(exc_text) > max_message)
        ):
            return False
        if (
            event.context_tags
            or event.event_stacktrace
            or event.custom_properties
            or event.custom_segments
        ) and not self._structure_fits(event):
            return False
        tags, links, images = envelope.tags, envelope.links, envelope.images
        if (
            tags
            or links
            or images
            or type(tags) is not dict
            or type(links) not in _SEQUENCES
            or type(images) not in _SEQUENCES
        ) and not self._side_fits(envelope):
            return False
        # One encoding of the event and the envelope's texts (fails on lone surrogates and
        # objects JSON cannot hold) and one decoding (fails on a value of the wrong type), which
        # an envelope alertkit typed itself does not need.
        logger_name, incident_key = envelope.logger_name, envelope.incident_key
        raw = _ENCODE((event, template, exc_text, logger_name, incident_key, tags, links, images))
        # No string is longer than the whole encoding: only a long one needs the field walk.
        if len(raw) > min(self.max_string, max_message) and not self._texts_fit(envelope):
            return False
        if not envelope.typed:
            _wire_decoder()(raw)
        budget = [self.max_total - len(raw)]
        if budget[0] < 0:
            return False
        details, payload, request_log = envelope.details, envelope.payload, envelope.request_log
        # Typed details within every limit, judged from their encoding, need no walk.
        size = self._bounded(details, budget[0]) if envelope.typed and details else None
        if size is not None:
            budget[0] -= size
        return (
            (
                size is not None
                or (type(details) is dict and (not details or self._small(details, 0, budget)))
            )
            and (payload is None or (type(payload) is dict and self._small(payload, 0, budget)))
            and (
                request_log is None
                or (type(request_log) is dict and self._small(request_log, 0, budget))
            )
        )

    def _bounded(self, data: dict[str, Any], budget: int) -> int | None:
        """The size of JSON-safe ``data`` (typed by alertkit: string keys of at most 200
        characters, 64-bit integers, finite floats) when it is within the limits, told from its
        encoding in C: no string in it is longer than the encoding, no container holds more
        items than it has commas plus one, none is nested deeper than it has brackets. None
        means: walk it."""
        encoded = _ENCODE(data)
        within = (
            len(encoded) <= min(self.max_string, budget)
            and encoded.isascii()  # as _small: a non-ASCII string gets a closer look
            and encoded.count(b",") < self.max_items
            and encoded.count(b"{") + encoded.count(b"[") <= self.max_depth
        )
        return len(encoded) if within else None

    def _texts_fit(self, envelope: Envelope) -> bool:
        event = envelope.event
        if len(event.event_message) > self.max_message:
            return False
        for text in (envelope.logger_name, envelope.incident_key):
            if text is not None and len(text) > self.max_string:
                return False
        for name in _event_text_fields():
            value = getattr(event, name)
            if value is not None and len(value) > self.max_string:
                return False
        return True

    def _structure_fits(self, event: AppEvent) -> bool:
        tags = event.context_tags or ()
        if len(tags) > self.max_items or any(len(tag) > MAX_NAME for tag in tags):
            return False
        for custom in (event.custom_properties, event.custom_segments):
            strings = custom.string_data if custom is not None else None
            if strings is not None and any(
                value is not None and len(value) > self.max_string
                for value in msgspec.structs.astuple(strings)
            ):
                return False
        stack = event.event_stacktrace or ()
        if len(stack) > self.max_exceptions:
            return False
        for entry in stack:
            frames = entry.trace_lines or ()
            if (
                len(frames) > self.max_frames
                or len(entry.type or "") > MAX_NAME
                or len(entry.message or "") > self.max_string
            ):
                return False
            for frame in frames:
                if len(frame.function or "") > MAX_NAME or len(frame.file or "") > MAX_NAME:
                    return False
        return True

    def _side_fits(self, envelope: Envelope) -> bool:
        tags = envelope.tags
        if type(tags) is not dict or len(tags) > self.max_items:
            return False
        if any(len(k) > 200 or len(v) > self.max_string for k, v in tags.items()):
            return False
        for links in (envelope.links, envelope.images):
            if type(links) not in _SEQUENCES or len(links) > self.max_items:
                return False
            for link in links:
                if any(len(k) > 200 or len(v) > self.max_string for k, v in link.items()):
                    return False
        return True

    def _small(self, value: Any, depth: int, budget: list[int]) -> bool:
        """Whether JSON-safe ``value`` is within depth, item, string and total limits; every
        node visited costs one unit of the budget, so a shared or cyclic structure ends the walk
        early instead of multiplying it."""
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if value is None or type(value) is bool:
            return True
        if type(value) is str:
            budget[0] -= len(value)
            return len(value) <= self.max_string and budget[0] >= 0 and value.isascii()
        if type(value) is int:
            return -_INT64 <= value < _INT64
        if type(value) is float:
            return math.isfinite(value)
        if depth >= self.max_depth or len(value) > self.max_items:
            return False
        if type(value) is dict:
            for key, item in value.items():
                if type(key) is not str or len(key) > 200 or not key.isascii():
                    return False
                kind = type(item)  # plain values inline: no call per item of a flat dict
                if kind is str:
                    budget[0] -= 1 + len(key) + len(item)
                    if len(item) > self.max_string or not item.isascii():
                        return False
                elif kind is int:
                    budget[0] -= 1 + len(key)
                    if not -_INT64 <= item < _INT64:
                        return False
                elif item is None or kind is bool:
                    budget[0] -= 1 + len(key)
                else:
                    budget[0] -= len(key)
                    if not self._small(item, depth + 1, budget):
                        return False
                if budget[0] < 0:
                    return False
            return True
        if type(value) is list:
            return all(self._small(item, depth + 1, budget) for item in value)
        return False

    def _fit(self, envelope: Envelope) -> Envelope:
        optional = self._optional_text
        return msgspec.structs.replace(
            envelope,
            event=self.event(envelope.event),
            logger_name=optional(envelope.logger_name, self.max_string),
            template=optional(envelope.template, self.max_message),
            exc_text=optional(envelope.exc_text, self.max_message),
            incident_key=optional(envelope.incident_key, self.max_string),
            details=self._dict(envelope.details),
            payload=None if envelope.payload is None else self._dict(envelope.payload),
            request_log=None if envelope.request_log is None else self._dict(envelope.request_log),
            tags=self._tags(envelope.tags),
            links=self._links(envelope.links),
            images=self._links(envelope.images),
        )

    def _optional_text(self, value: Any, limit: int) -> str | None:
        return None if value is None else self.text(value, limit)

    def _dict(self, value: Any) -> dict[str, Any]:
        data = self.data(value)
        return data if isinstance(data, dict) else {"data": data}

    def _tags(self, tags: Any) -> dict[str, str]:
        if not isinstance(tags, Mapping):
            return {}
        items = list(tags.items())[: self.max_items]
        return {self.text(k, 200): self.text(v) for k, v in items}

    def _links(self, links: Any) -> list[dict[str, str]]:
        if not isinstance(links, list | tuple):
            return []
        return [
            {self.text(k, 200): self.text(v) for k, v in link.items()}
            for link in links[: self.max_items]
            if isinstance(link, Mapping)
        ]


def _unchanged(old: Any, new: list[Any]) -> TypeGuard[list[Any]]:
    """True when ``old`` is a list holding exactly the objects of ``new``."""
    return (
        type(old) is list
        and len(new) == len(old)
        and all(a is b for a, b in zip(new, old, strict=True))
    )


@functools.cache
def _event_type() -> mi.StructType:
    """The wire event's type information, made on first use (about 8 ms: not at import)."""
    info: mi.StructType = mi.type_info(AppEvent)  # type: ignore[assignment]
    return info


_ENCODE = msgspec.json.Encoder().encode


@functools.cache
def _wire_decoder() -> Callable[[bytes], Any]:
    """Decodes what :meth:`Limits._fits` encodes: the event and the envelope's texts. Made on
    first use: building it costs about 4 ms (type hints resolved), which ``import alertkit``
    should not pay, and log records (typed envelopes) never need it."""
    return msgspec.json.Decoder(
        tuple[
            AppEvent,
            str | None,
            str | None,
            str | None,
            str | None,
            dict[str, str],
            list[dict[str, str]],
            list[dict[str, str]],
        ]
    ).decode


def _is_text(kind: Any) -> bool:
    while isinstance(kind, mi.Metadata):
        kind = kind.type
    if isinstance(kind, mi.UnionType):
        return any(_is_text(t) for t in kind.types)
    return isinstance(kind, mi.StrType)


@functools.cache
def _event_text_fields() -> tuple[str, ...]:
    """The string fields of the wire event other than the message (which has its own limit)."""
    return tuple(
        f.name for f in _event_type().fields if f.name != "event_message" and _is_text(f.type)
    )
