"""The event model: the generated wire classes, their dict/JSON helpers, and the envelope around them.

The wire classes (``AppEvent``, ``CustomData`` ...) are generated from ``generated/openapi.json`` into
the ``alertkit_generated`` package and are never edited by hand; they have ``to_dict()``,
``to_json()``, ``from_dict()`` and ``from_json()`` from their base class. This module re-exports
them, gives the pipeline a fast encoder, and defines :class:`Envelope`: what a backend needs beyond the wire model travels beside the event there,
so the Trakerr JSON stays exactly WIRE.md section 1.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
from alertkit_generated import (
    AppEvent,
    CustomData,
    CustomDoubleData,
    CustomStringData,
    Error,
    InnerStackTrace,
    StackTraceLine,
)

__all__ = [
    "AppEvent",
    "CodeLocation",
    "CustomData",
    "CustomDoubleData",
    "CustomStringData",
    "Envelope",
    "Error",
    "InnerStackTrace",
    "StackTraceLine",
    "decode_envelope",
    "decode_event",
    "encode_envelope",
    "encode_event",
]

_T = TypeVar("_T", bound=msgspec.Struct)
_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode_event(event: msgspec.Struct) -> bytes:
    """Encode a wire model as compact JSON bytes, None fields left out."""
    return _ENCODER.encode(event)


def decode_event(data: bytes | str, model: type[_T] = AppEvent) -> _T:  # type: ignore[assignment]
    """Decode and validate JSON into a wire model.

    Raises:
        msgspec.ValidationError: the JSON does not match the model.
    """
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = msgspec.json.Decoder(model)
    result: _T = decoder.decode(data)
    return result


def new_event_id() -> str:
    """A fresh event id: travels with the event through retries and spool replays."""
    # random (reseeded in forked children) is cheaper than os.urandom, whose system call releases
    # the GIL on every event; ids need uniqueness, not secrecy.
    return "%032x" % random.getrandbits(128)  # noqa: UP031 (cheaper than an f-string)


class CodeLocation(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Where a log record was made. A struct, not a tuple: an envelope's fields stay out of the
    garbage collector's sight (a new tuple is tracked until a collection looks at it)."""

    function: str
    filepath: str
    lineno: int


class Envelope(msgspec.Struct, eq=False, gc=False):
    """One event on its way through the pipeline, with what backends need beyond the wire model.

    Attributes:
        event: the wire event, sent as is by the HTTP backend and stored by the local inbox.
        kind: ``"event"`` for application events; other kinds (metrics, incident lifecycle) carry
            their data in ``payload`` and only reach backends that declare the kind.
        event_id: stable across retries and replays, so deduplicating destinations see one event.
        levelno: the :mod:`logging` number of the event's level, for ``min_level`` routing.
        logger_name: the logger that produced the record, when it came through logging.
        template: the unformatted message (``record.msg``): the same for every host in
            ``log.error("Disk %s full", host)``, which makes it a grouping key.
        details: the record's ``extra`` fields, or the keys of ``Client.log`` that have no wire field.
        exc_text: the formatted traceback, for destinations that show text.
        incident_key: a dedup key chosen by the user (handler option or ``extra``).
        links: ``[{"href", "text"}]`` to attach where the destination supports it; an empty
            tuple by default, so a processor adding links assigns a new list.
        images: ``[{"src", "href", "alt"}]`` likewise.
        tags: key/value tags (client, scope, ``extra={"tags": ...}``).
        request_log: the scope's request log, when the event escalates one.
        payload: the data of non-event kinds.
        created: seconds since the epoch when the event was captured.
        storm_suppressed: storm control counted this event as a repeat: backends that page
            people (``storm_controlled``) skip it and get a digest later; sinks still get it.
        digest: this event is a storm digest, meant for the storm-controlled backends only.
        breadcrumbs: what the program logged (and added) just before this event in the same
            context, oldest first: ``{"timestamp", "level", "category", "message", "data"}``.
        trace_id: the W3C trace id (32 hex digits) of the span active when the event was captured.
        span_id: the W3C span id (16 hex digits) of that span.
        fingerprint: the grouping the application chose (``"{{ default }}"`` already expanded);
            storm control and dedup keys group by it when set.
        code_location: the function, file path and line number of the logging call, when the
            event came from a log record (OpenTelemetry's ``code.*`` attributes).
    """

    event: AppEvent
    kind: str = "event"
    event_id: str = msgspec.field(default_factory=new_event_id)
    levelno: int = 40
    logger_name: str | None = None
    template: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    exc_text: str | None = None
    incident_key: str | None = None
    # A shared empty tuple by default rather than a list per envelope: a queued backlog of
    # envelopes then holds no object the garbage collector tracks, so it triggers no collections.
    links: Sequence[dict[str, str]] = ()
    images: Sequence[dict[str, str]] = ()
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    request_log: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    created: float = msgspec.field(default_factory=time.time)
    storm_suppressed: bool = False
    digest: bool = False
    breadcrumbs: Sequence[dict[str, Any]] = ()
    trace_id: str | None = None
    span_id: str | None = None
    fingerprint: Sequence[str] | None = None
    code_location: CodeLocation | None = None


def encode_envelope(envelope: Envelope) -> bytes:
    """The whole envelope as JSON, as the spool and the event stream store it; a value the
    pipeline failed to make JSON-safe is kept as its repr rather than losing the event."""
    from alertkit.model.values import safe_repr

    return msgspec.json.encode(envelope, enc_hook=safe_repr)


def decode_envelope(blob: bytes) -> Envelope:
    """An envelope stored by :func:`encode_envelope`.

    Raises:
        msgspec.DecodeError: not an envelope (a foreign record, a truncated write).
    """
    return msgspec.json.decode(blob, type=Envelope)
