"""Trace correlation: the W3C trace and span ids an event carries (``Envelope.trace_id`` /
``span_id``).

Where the ids come from, first found wins, read on the caller's thread when the event is captured
(the OpenTelemetry context is a context variable: it does not follow the event to the worker):

1. the current valid OpenTelemetry span, when the application uses ``opentelemetry-api``;
2. the W3C ``traceparent`` header of the request the event belongs to, which the ASGI/WSGI
   middleware hands to :func:`continue_trace` when no span is active (a caller with no tracing
   of its own still joins the trace of the service that called it).

``opentelemetry-api`` is never imported by alertkit: a process that has not imported
``opentelemetry.trace`` itself has no span to read, so one ``sys.modules`` look-up is the whole
cost there. With OpenTelemetry loaded, the span is read from OpenTelemetry's own context variable
where ``get_current_span()`` looks (see :func:`_find_span_variable`; else through that function),
so that "no span", most log records of most services, costs one read. The ids are kept as
integers and written as hex on the policy thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, Protocol

import msgspec

from alertkit.guard import capture_internal_exceptions
from alertkit.model.event import Envelope

__all__ = [
    "TraceIds",
    "continue_trace",
    "current_span_ids",
    "parse_traceparent",
    "traced",
]

#: ``(trace_id, span_id)``: as integers from a span, as hex text from a header.
TraceIds = tuple[int, int] | tuple[str, str]

_HEX = frozenset("0123456789abcdef")
_TRACEPARENT_LENGTH = 55  # 2 + 1 + 32 + 1 + 16 + 1 + 2

_get_current_span: Callable[[], Any] | None = None
#: OpenTelemetry's current-context variable and the key its current span is kept under, when the
#: API runs on its default runtime context (see :func:`_find_span_variable`); else None.
span_variable: ContextVar[Any] | None = None
span_key = ""


def _span_getter() -> Callable[[], Any] | None:
    """``opentelemetry.trace.get_current_span`` once the application has imported it."""
    global _get_current_span
    module = sys.modules.get("opentelemetry.trace")
    getter = getattr(module, "get_current_span", None) if module is not None else None
    if not callable(getter):
        return None
    _get_current_span = getter
    _find_span_variable()
    return _get_current_span


def _find_span_variable() -> None:
    """Find where ``get_current_span()`` looks, so that "no span" is one read of it.

    ``get_current_span()`` is five Python calls (about 4,000 instructions per event, a third of
    the handler's own cost), most often to say that there is no span. Its answer is the current
    context's value under the span key, a dict entry in a context variable when the API runs on
    its default ``ContextVarsRuntimeContext``. Any other runtime context (``OTEL_PYTHON_CONTEXT``),
    or internals not as expected: the variable stays unknown and the API is asked every time. (A
    value there that is not a span, which the API would replace by ``INVALID_SPAN``, fails
    ``get_span_context()`` and gives no ids, as the invalid span would.)
    """
    global span_variable, span_key
    try:
        runtime = getattr(sys.modules.get("opentelemetry.context"), "_RUNTIME_CONTEXT", None)
        variable = getattr(runtime, "_current_context", None)
        key = getattr(sys.modules.get("opentelemetry.trace.propagation"), "_SPAN_KEY", None)
        if (
            type(runtime).__name__ == "ContextVarsRuntimeContext"
            and isinstance(variable, ContextVar)
            and isinstance(key, str)
            and isinstance(variable.get(), dict)
        ):
            span_key = key
            span_variable = variable
    except Exception:  # an API version laid out otherwise: ask it every time
        span_variable = None


def current_span_ids() -> tuple[int, int] | None:
    """The ids of the current valid OpenTelemetry span as integers, or None; never raises."""
    getter = _get_current_span
    if getter is None:
        if "opentelemetry.trace" not in sys.modules:  # the whole cost without OpenTelemetry
            return None
        getter = _span_getter()
        if getter is None:
            return None
    try:
        variable = span_variable  # (get_current_span() read directly when it can be)
        span = getter() if variable is None else variable.get().get(span_key)
        if span is None:
            return None
        context = span.get_span_context()
        if context.is_valid:
            return context.trace_id, context.span_id
    except Exception:  # an SDK's span that misbehaves must not cost the event
        return None
    return None


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """The ``(trace_id, parent_id)`` of a W3C ``traceparent`` header, or None when invalid.

    Follows W3C Trace Context level 1 section 3.2: ``version-traceid-parentid-flags``, lowercase
    hex only; version ``ff`` is invalid; version ``00`` is exactly 55 characters, a later version
    at least that with a ``-`` after them; all-zero trace or parent ids are invalid.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    value = value.strip(" \t")
    version = value[:2]
    if len(value) < _TRACEPARENT_LENGTH or not _is_hex(version) or version == "ff":
        return None
    if len(value) > _TRACEPARENT_LENGTH and (version == "00" or value[55] != "-"):
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if not (_is_hex(trace_id) and _is_hex(parent_id) and _is_hex(flags)):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


def _is_hex(text: str) -> bool:
    return bool(text) and _HEX.issuperset(text)


class _HasTrace(Protocol):
    trace: tuple[str, str] | None


def continue_trace(scope: _HasTrace, traceparent: str | bytes | Iterable[bytes] | None) -> None:
    """Give a request's scope the ids of its incoming ``traceparent`` header, when no span is
    active (an active span wins at capture anyway) and the header is valid; never raises.

    ``traceparent`` is the header's value, or every value an ASGI request has under that name:
    more than one is invalid, as the W3C spec asks.
    """
    with capture_internal_exceptions():
        if traceparent is None or current_span_ids() is not None:
            return
        if not isinstance(traceparent, str | bytes):
            values = list(traceparent)
            if len(values) != 1:
                return
            traceparent = values[0]
        ids = parse_traceparent(traceparent)
        if ids is not None:
            scope.trace = ids


class _ScopeIds(Protocol):
    @property
    def trace(self) -> tuple[str, str] | None: ...


class _Traced(msgspec.Struct, gc=False):
    """A capture that stamps the ids read at capture time on the envelope it builds."""

    capture: Callable[[], Envelope | None]
    trace_id: int | str
    span_id: int | str

    def __call__(self) -> Envelope | None:
        envelope = self.capture()
        if envelope is not None and envelope.trace_id is None:
            trace_id, span_id = self.trace_id, self.span_id
            if type(trace_id) is int:
                trace_id = f"{trace_id:032x}"
            if type(span_id) is int:
                span_id = f"{span_id:016x}"
            envelope.trace_id, envelope.span_id = str(trace_id), str(span_id)
            # The Trakerr wire event has no field for them: tags carry them to the event API and
            # the local inbox (searchable there), beside the envelope fields other backends show.
            tags = envelope.event.context_tags
            envelope.event.context_tags = [
                *(tags or ()),
                f"trace_id:{trace_id}",
                f"span_id:{span_id}",
            ]
        return envelope


def traced(
    capture: Callable[[], Envelope | None], scope: _ScopeIds | None = None
) -> Callable[[], Envelope | None]:
    """``capture`` stamping the current trace ids (span first, else ``scope``'s header ids).

    Runs on the caller's thread, where the tracing context is; returns ``capture`` itself when
    there are no ids, which is the whole cost for an application without tracing.
    """
    variable = span_variable
    if variable is not None:  # read where get_current_span() looks: "no span" costs no call
        maybe_span = variable.get().get(span_key) is not None
    else:
        maybe_span = _get_current_span is not None or "opentelemetry.trace" in sys.modules
    ids: TraceIds | None = current_span_ids() if maybe_span else None
    if ids is None:
        if scope is None or scope.trace is None:
            return capture
        ids = scope.trace
    return _Traced(capture, ids[0], ids[1])
