"""From an alertkit event to an OpenTelemetry log record, per the logs data model and the
semantic conventions (WIRE.md section 6): the values only; :mod:`._otlp_wire` encodes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alertkit.backends import _otlp_wire as wire
from alertkit.model.event import CodeLocation, Envelope

#: (lowest logging level, OpenTelemetry severity number, severity text), highest first.
_SEVERITY = (
    (50, 21, "FATAL"),
    (40, 17, "ERROR"),
    (30, 13, "WARN"),
    (20, 9, "INFO"),
    (10, 5, "DEBUG"),
)


def severity(levelno: int) -> tuple[int, str]:
    """OpenTelemetry's severity number and text for a :mod:`logging` level number: DEBUG 5,
    INFO 9, WARN 13, ERROR 17, FATAL 21, with levels between them counting up to 3 steps (as the
    data model's appendix maps Python's levels); below DEBUG is TRACE."""
    for floor, number, text in _SEVERITY:
        if levelno >= floor:
            return number + min(levelno - floor, 3), text
    return 1, "TRACE"


#: :func:`severity` of the levels 0-59, looked up rather than computed for each record.
_BY_LEVEL = [severity(levelno) for levelno in range(60)]


def _ids(envelope: Envelope) -> tuple[bytes | None, bytes | None]:
    """The W3C trace and span ids as bytes, or None when absent, malformed or all zero."""
    out: list[bytes | None] = []
    for value, size in ((envelope.trace_id, 16), (envelope.span_id, 8)):
        try:
            raw = bytes.fromhex(value) if value else b""
        except (TypeError, ValueError):
            raw = b""
        out.append(raw if len(raw) == size and any(raw) else None)
    return out[0], out[1]


def to_record(envelope: Envelope) -> wire.Record:
    """The OTLP log record of one event: semantic-convention attributes first, then the
    event's tags and details (already scrubbed and bounded by the policy stage)."""
    event = envelope.event
    attributes: dict[str, Any] = {}
    traces = event.event_stacktrace
    if traces:
        raised = traces[0]
        attributes["exception.type"] = raised.type or ""
        attributes["exception.message"] = raised.message or ""
        attributes["exception.stacktrace"] = envelope.exc_text or _render(traces)
    elif envelope.exc_text:
        attributes["exception.stacktrace"] = envelope.exc_text
    location = envelope.code_location
    if location is None and traces and traces[0].trace_lines:
        frame = traces[0].trace_lines[-1]  # where the exception was raised
        location = CodeLocation(frame.function or "", frame.file or "", frame.line or 0)
    if location is not None:
        function, path, line = location.function, location.filepath, location.lineno
        # The names the issue and older collectors know, and semconv 1.26's stable ones.
        attributes["code.function"] = attributes["code.function.name"] = function
        attributes["code.filepath"] = attributes["code.file.path"] = path
        attributes["code.lineno"] = attributes["code.line.number"] = line
    attributes["log.record.uid"] = envelope.event_id
    if not traces and event.event_type not in (None, "", "unknown"):
        attributes["alertkit.event_type"] = event.event_type
    if event.event_user:
        attributes["user.id"] = event.event_user
    if event.event_session:
        attributes["session.id"] = event.event_session
    for source in (envelope.tags, envelope.details):
        for given, value in source.items():
            key = given if type(given) is str else str(given)
            if key not in attributes:  # what came first wins
                attributes[key] = value
    levelno = envelope.levelno
    number, text = _BY_LEVEL[levelno] if 0 <= levelno < 60 else severity(levelno)
    if envelope.trace_id is None and envelope.span_id is None:  # most events
        trace_id = span_id = None
    else:
        trace_id, span_id = _ids(envelope)
    return _RECORD(
        (
            int(envelope.created * 1e9),
            number,
            text,
            str(event.event_message),
            list(attributes.items()),
            trace_id,
            span_id,
        )
    )


#: A record from its values in field order, without ``Record.__new__``'s keyword handling.
_RECORD = wire.Record._make


def _render(traces: Sequence[Any]) -> str:
    """A Python-style traceback from the wire stack trace (when no formatted one travelled)."""
    blocks = []
    for trace in reversed(traces):  # the cause first, as Python prints it
        lines = ["Traceback (most recent call last):"]
        lines += [
            f'  File "{t.file}", line {t.line}, in {t.function}' for t in trace.trace_lines or ()
        ]
        lines.append(f"{trace.type}: {trace.message}" if trace.message else str(trace.type))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
