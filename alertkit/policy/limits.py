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
from itertools import islice
from typing import Any, TypeGuard

import msgspec
import msgspec.inspect as mi

from alertkit.guard import report_internal_error
from alertkit.model.event import AppEvent, Envelope, InnerStackTrace, StackTraceLine
from alertkit.model.stacktrace import safe_str
from alertkit.model.values import (
    DEPTH_MARKER,
    INT64,
    ITEMS_MARKER,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_KEY,
    MAX_STRING,
    MAX_TOTAL,
    Bounds,
    KnownObjects,
    clean_str,
    clip,
    plain_scalar,
)

__all__ = [
    "DEPTH_MARKER",
    "EXCEPTIONS_MARKER",
    "FRAMES_MARKER",
    "MAX_DEPTH",
    "MAX_EXCEPTIONS",
    "MAX_FRAMES",
    "MAX_ITEMS",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MAX_STRING",
    "MAX_TOTAL",
    "Limits",
]

# MAX_STRING, MAX_ITEMS, MAX_DEPTH and MAX_TOTAL are defined once, in alertkit.model.values,
# whose walk the capture uses too; the limits only the policy thread applies are defined here.
#: Characters kept of the event message, the traceback text and the message template.
MAX_MESSAGE = 32768
#: Frames kept per exception of a stack trace.
MAX_FRAMES = 100
#: Exceptions kept of a chain (``raise ... from ...``).
MAX_EXCEPTIONS = 10
#: Characters kept of a frame's file name and function name, of an exception's type name, and of
#: each ``contextTags`` entry.
MAX_NAME = 512

#: Breadcrumbs remembered as fitted (a few trails' worth).
_CRUMB_MEMO = 1024

FRAMES_MARKER = "[{n} frames cut]"
EXCEPTIONS_MARKER = "[{n} more exceptions cut]"


class Limits(Bounds):
    """A pipeline processor that bounds an envelope and makes it JSON-safe; never raises.

    One transform: it returns the very envelope it was given when nothing in it needs to change
    (the common log event), else a copy; there is no separate "does it fit?" check.

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

    max_message: int
    max_frames: int
    max_exceptions: int

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
        for name, value in values.items():
            setattr(self, name, value)
        # The transforms compiled from the types, on first use (not under a lock that a fork
        # could leave held: functools.cached_property takes one before Python 3.12).
        self._fit_event: Callable[[Any], Any] | None = None
        self._fit: Callable[[Envelope], Envelope] | None = None
        self._frame: Callable[[StackTraceLine], StackTraceLine] | None = None
        self._fit_crumbs = KnownObjects(_CRUMB_MEMO)  # crumbs found within the limits

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
        """``value`` as a clean string of at most ``limit`` (default ``max_string``) characters:
        ``value`` itself when it already is one."""
        limit = self.max_string if limit is None else limit
        if type(value) is str:
            if len(value) <= limit and value.isascii():
                return value  # nothing to cut, no surrogate possible
            text = value
        else:  # a str subclass (markupsafe.Markup) as a plain str, which every encoder takes
            plain = plain_scalar(value)
            text = plain if type(plain) is str else safe_str(value)
        return clean_str(clip(text, limit))

    # -- the wire event ------------------------------------------------------------------------------

    def event(self, event: AppEvent) -> AppEvent:
        """The wire event with every field of its declared type and within the limits: the same
        object when nothing had to change, else a copy."""
        fitted: AppEvent = self._event_transform()(event)
        return fitted

    def _event_transform(self) -> Callable[[Any], Any]:
        """The wire event's compiled transform (made on first use)."""
        if self._fit_event is None:
            special: dict[str, _Fitter] = {
                "event_message": (
                    lambda value: self.text(value, self.max_message),
                    _text_keep(self.max_message, required=True),
                ),
                "event_stacktrace": (self._stacktrace, "{v} is None"),
                "context_tags": (self._context_tags, "{v} is None"),
            }
            self._fit_event = self._compile(_type_info(AppEvent), special)
        return self._fit_event

    def _compile(
        self, info: mi.StructType, special: dict[str, _Fitter] | None = None
    ) -> Callable[[Any], Any]:
        """The transform of one struct type, built once from its declared types: one Python
        function that reads every field, keeps a value that passes its kind's test (inline, no
        call) and fits the others, and returns the struct itself when no field changed (told by
        a flag set where a fitted value is a new one, not by comparing every field at the end)."""
        names = [field.name for field in info.fields]
        scope: dict[str, Any] = {
            "astuple": msgspec.structs.astuple,
            "cls": info.cls,
            "names": tuple(names),
            "INT64": INT64,
            "isfinite": math.isfinite,
        }
        olds = ", ".join(f"v{i}" for i in range(len(names))) + ","
        body = [
            "def fit(obj):",
            "    try:",
            f"        {olds} = astuple(obj)",
            "    except Exception:  # a field deleted from the struct: as if it were unset",
            f"        {olds} = (getattr(obj, name, None) for name in names)",
        ]
        body.append("    changed = False")
        for i, field in enumerate(info.fields):
            fit, keep = (special or {}).get(field.name) or self._fitter(field.type, field.required)
            scope[f"fit{i}"] = _guarded(fit)
            if keep == "True":  # not the limits' concern: not even read
                continue
            refit = [
                f"n = fit{i}(v{i})",
                f"if n is not v{i}:",
                f"    v{i}, changed = n, True",
            ]
            if keep is None:
                body += [f"    {line}" for line in refit]
            else:  # a value that passes its kind's test costs no call
                body.append(f"    if not {keep.format(v=f'v{i}')}:")
                body += [f"        {line}" for line in refit]
        values = ", ".join(f"{name}=v{i}" for i, name in enumerate(names))
        body += ["    if not changed:", "        return obj", f"    return cls({values})"]
        exec("\n".join(body), scope)  # source built from the type's own field names
        compiled: Callable[[Any], Any] = scope["fit"]
        return compiled

    def _fitter(self, kind: Any, required: bool) -> _Fitter:
        """A function that turns any value into one of type ``kind`` (or None, if allowed), and
        the test (a Python expression on ``{v}``) of the values it keeps as they are."""
        while isinstance(kind, mi.Metadata):
            kind = kind.type
        if isinstance(kind, mi.UnionType):
            choices = [t for t in kind.types if not isinstance(t, mi.NoneType)]
            if not choices:
                return (lambda value: None), "{v} is None"
            inner, keep = self._fitter(choices[0], not kind.includes_none)
            if not kind.includes_none:
                return inner, keep
            return (lambda value: None if value is None else inner(value)), (
                "{v} is None" if keep is None else f"({{v}} is None or {keep})"
            )
        if isinstance(kind, mi.StrType):
            return self.text, _text_keep(self.max_string, required)
        if isinstance(kind, mi.IntType):
            default_int = 0 if required else None

            def fit_int(value: Any) -> Any:
                if type(value) is int and -INT64 <= value < INT64:
                    return value
                plain = plain_scalar(value)  # an int subclass (IntEnum) as a plain int
                return plain if type(plain) is int else default_int

            return fit_int, "(type({v}) is int and -INT64 <= {v} < INT64)"
        if isinstance(kind, mi.FloatType):
            default_float = 0.0 if required else None

            def fit_float(value: Any) -> Any:
                if type(value) is float and math.isfinite(value):
                    return value
                number = plain_scalar(value)  # subclasses as their base type, NaN as "nan"
                return float(number) if type(number) in (int, float) else default_float

            return fit_float, "(type({v}) is float and isfinite({v}))"
        if isinstance(kind, mi.LiteralType):
            allowed = frozenset(kind.values)

            def fit_literal(value: Any) -> Any:
                # Compared as plain scalars: a list is unhashable, an object's __eq__ may raise.
                plain = plain_scalar(value)
                return plain if type(plain) in (str, int) and plain in allowed else None

            # Compared after the type test, as the function does: a list is unhashable.
            members = repr(set(allowed)).replace("{", "{{").replace("}", "}}")
            return fit_literal, f"(type({{v}}) in (str, int) and {{v}} in {members})"
        if isinstance(kind, mi.ListType):
            item = _guarded(self._fitter(kind.item_type, True)[0])
            limit = self.max_items

            def fit_list(value: Any) -> Any:
                if not isinstance(value, list | tuple):
                    return None
                result = [item(element) for element in value[:limit]]
                return value if _unchanged(value, result) else result

            return fit_list, None
        if isinstance(kind, mi.StructType):
            fit_struct = self._compile(kind)
            cls = kind.cls
            return (lambda value: fit_struct(value) if isinstance(value, cls) else None), None
        if isinstance(kind, mi.BoolType):
            default_bool = False if required else None
            return (
                lambda value: value if type(value) is bool else default_bool
            ), "type({v}) is bool"
        return (lambda value: None), "{v} is None"

    def _context_tags(self, tags: Any) -> list[str] | None:
        if not isinstance(tags, list | tuple):
            return None
        limit = min(MAX_NAME, self.max_string)
        result = [self.text(tag, limit) for tag in tags[: self.max_items]]
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
        if self._frame is None:
            self._frame = self._compile_frame()
        frame = self._frame
        fitted = [frame(line) for line in lines if isinstance(line, StackTraceLine)]
        frames: list[StackTraceLine] | None = fitted
        if len(fitted) > self.max_frames:
            head = self.max_frames // 2
            tail = self.max_frames - head
            marker = StackTraceLine(function=FRAMES_MARKER.format(n=len(fitted) - self.max_frames))
            frames = [*fitted[:head], marker, *fitted[len(fitted) - tail :]]
        elif entry.trace_lines is None or _unchanged(lines, fitted):
            frames = entry.trace_lines  # None, or the caller's list: nothing in it needs cutting
        kind = None if entry.type is None else self.text(entry.type, MAX_NAME)
        message = None if entry.message is None else self.text(entry.message, self.max_string)
        if frames is entry.trace_lines and kind is entry.type and message is entry.message:
            return entry
        return InnerStackTrace(type=kind, message=message, trace_lines=frames)

    def _compile_frame(self) -> Callable[[StackTraceLine], StackTraceLine]:
        """A frame's transform, compiled from its type: names cut to ``MAX_NAME``."""
        short = min(MAX_NAME, self.max_string)
        name: _Fitter = (lambda v: self._optional_text(v, short), _text_keep(short, False))
        fit: Callable[[StackTraceLine], StackTraceLine] = self._compile(
            _type_info(StackTraceLine), {"function": name, "file": name}
        )
        return fit

    # -- the processor -------------------------------------------------------------------------------

    def __call__(self, envelope: Envelope) -> Envelope | None:
        """``envelope`` bounded: itself when nothing needs to change, else a copy; None (the
        event is dropped) when it has no wire event."""
        if not isinstance(envelope.event, AppEvent):
            return None
        try:
            if self._fit is None:
                self._fit = self._compile_envelope()
            return self._fit(envelope)
        except Exception as exc:  # a bug here must not stop the alert: send the bare event
            report_internal_error(exc)
            return Envelope(
                event=self.event(envelope.event),
                kind=envelope.kind if isinstance(envelope.kind, str) else "event",
                event_id=self.text(envelope.event_id, MAX_KEY),
                levelno=envelope.levelno if isinstance(envelope.levelno, int) else 40,
                created=envelope.created if isinstance(envelope.created, float) else 0.0,
            )

    def _compile_envelope(self) -> Callable[[Envelope], Envelope]:
        """The envelope's transform, compiled as the wire event's is: each field beside the event
        has its fitting function and the test of what it keeps (None where allowed, an empty
        dict or list), so the usual envelope costs no call for most of them."""
        string, message = self.max_string, self.max_message
        as_is: _Fitter = (lambda value: value, "True")  # not the limits' concern
        empty = "(type({v}) is dict and not {v})"
        no_links = "(type({v}) in (list, tuple) and not {v})"
        special: dict[str, _Fitter] = {
            "event": (self._event_transform(), None),  # not through self.event: a call less
            "kind": as_is,
            "event_id": as_is,
            "levelno": as_is,
            "created": as_is,
            "storm_suppressed": as_is,
            "digest": as_is,
            "code_location": as_is,  # a CodeLocation checked at capture: a path and a name
            "logger_name": (lambda v: self._optional_text(v, string), _text_keep(string, False)),
            "template": (lambda v: self._optional_text(v, message), _text_keep(message, False)),
            "exc_text": (lambda v: self._optional_text(v, message), _text_keep(message, False)),
            "incident_key": (lambda v: self._optional_text(v, string), _text_keep(string, False)),
            "details": (self._dict, empty),
            "payload": (self._optional_dict, f"({{v}} is None or {empty})"),
            "request_log": (self._optional_dict, f"({{v}} is None or {empty})"),
            "tags": (self._tags, empty),
            "links": (self._links, no_links),
            "images": (self._links, no_links),
            "breadcrumbs": (self._breadcrumbs, no_links),
            "trace_id": (lambda v: self._optional_text(v, MAX_KEY), _text_keep(MAX_KEY, False)),
            "span_id": (lambda v: self._optional_text(v, MAX_KEY), _text_keep(MAX_KEY, False)),
            "fingerprint": (self._fingerprint, "({v} is None)"),
        }
        fit: Callable[[Envelope], Envelope] = self._compile(_type_info(Envelope), special)
        return fit

    def _breadcrumbs(self, crumbs: Any) -> Any:
        """The newest ``max_items`` breadcrumbs, each a mapping bounded like ``details``, as a
        tuple: ``crumbs`` itself when nothing needs to change. A crumb found within the limits
        is remembered by identity, as the scrubber does (consecutive errors share their trail)."""
        if not isinstance(crumbs, list | tuple):
            return ()
        fit = self._fit_crumbs
        if len(crumbs) > self.max_items:
            crumbs = tuple(crumbs[-self.max_items :])
        changed = False
        for crumb in fit.unknown(crumbs):  # usually the newest crumb only
            if crumb in fit:
                continue  # the same crumb twice in one trail
            if isinstance(crumb, Mapping) and self.data(crumb) is crumb:
                fit.add(crumb)
            else:
                changed = True
        if not changed:
            fit.settled(crumbs)
            return crumbs
        return tuple(c if c in fit else self.data(c) for c in crumbs if isinstance(c, Mapping))

    def _fingerprint(self, parts: Any) -> list[str] | None:
        """The fingerprint: ``max_items`` strings of at most ``MAX_NAME`` characters."""
        if not isinstance(parts, list | tuple):
            return None
        limit = min(MAX_NAME, self.max_string)
        result = [self.text(part, limit) for part in parts[: self.max_items]]
        return parts if _unchanged(parts, result) else result

    def _optional_text(self, value: Any, limit: int) -> str | None:
        return None if value is None else self.text(value, limit)

    def _optional_dict(self, value: Any) -> dict[str, Any] | None:
        return None if value is None else self._dict(value)

    def _dict(self, value: Any) -> dict[str, Any]:
        data = self.data(value)
        return data if isinstance(data, dict) else {"data": data}

    def _tags(self, tags: Any) -> dict[str, str]:
        if not isinstance(tags, Mapping):
            return {}
        return self._text_map(tags)

    def _text_map(self, texts: Mapping[Any, Any]) -> dict[str, str]:
        """``texts`` as a dict of bounded strings: itself when it already is one."""
        text = self.text
        result = {text(k, MAX_KEY): text(v) for k, v in islice(texts.items(), self.max_items)}
        if type(texts) is dict and len(result) == len(texts):
            pairs = zip(texts.items(), result.items(), strict=True)
            if all(a is c and b is d for (a, b), (c, d) in pairs):
                return texts
        return result

    def _links(self, links: Any) -> Any:
        if not isinstance(links, list | tuple):
            return []
        result = [
            self._text_map(link) for link in links[: self.max_items] if isinstance(link, Mapping)
        ]
        if len(result) == len(links) and all(a is b for a, b in zip(result, links, strict=True)):
            return links  # a list, or the shared empty tuple of a new envelope
        return result


#: A field's fitting function and the test of the values it keeps (None: no inline test).
_Fitter = tuple[Callable[[Any], Any], str | None]


def _text_keep(limit: int, required: bool) -> str:
    """The test of a string kept as it is, as :meth:`Limits.text` makes it first."""
    keep = f"(type({{v}}) is str and len({{v}}) <= {limit} and {{v}}.isascii())"
    return keep if required else f"({{v}} is None or {keep})"


def _guarded(fit: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fit``, with a value whose checks raise (a hostile object) fitted as if it were unset."""

    def guarded(value: Any) -> Any:
        try:
            return fit(value)
        except Exception:
            return fit(None)

    return guarded


def _unchanged(old: Any, new: list[Any]) -> TypeGuard[list[Any]]:
    """True when ``old`` is a list holding exactly the objects of ``new``."""
    return (
        type(old) is list
        and len(new) == len(old)
        and all(a is b for a, b in zip(new, old, strict=True))
    )


@functools.cache
def _type_info(cls: type[Any]) -> mi.StructType:
    """A struct's type information, made on first use (about 8 ms for the wire event: not at
    import)."""
    info: mi.StructType = mi.type_info(cls)  # type: ignore[assignment]
    return info
