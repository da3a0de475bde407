"""Trace correlation with the real OpenTelemetry SDK: events carry the span active where they were
captured; the middleware continues a valid W3C traceparent; every backend shows the ids."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Iterator

import fastapi
import flask
import pytest
from opentelemetry import trace as otel
from opentelemetry.sdk.trace import TracerProvider

from alertkit import AlertHandler, Client, Envelope
from alertkit.backends._message import summarize
from alertkit.backends.redis import RedisBackend
from alertkit.capture import trace
from alertkit.capture.trace import continue_trace, parse_traceparent
from alertkit.integrations.asgi import AlertkitMiddleware as AsgiMiddleware
from alertkit.integrations.wsgi import AlertkitMiddleware as WsgiMiddleware
from alertkit.testing import MemoryBackend
from tests.standins.http import ScriptedServer

TRACER = TracerProvider().get_tracer("tests.trace")
HEADER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(backends=[memory], sample_system=False, register_atexit=False)
    yield made
    made.shutdown(2.0)


def ids(span: otel.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_every_capture_path_carries_the_active_span(client: Client, memory: MemoryBackend) -> None:
    log = logging.getLogger("tests.trace.paths")
    log.propagate = False
    log.addHandler(AlertHandler(client=client))
    try:
        with TRACER.start_as_current_span("checkout") as span:
            expected = ids(span)
            log.error("payment failed")
            client.log({"eventmessage": "from log()"}, "error", exc_info=False)
            client.send_event_async(client.create_new_app_event("error", event_message="direct"))
            with client.scope() as scope:
                scope.capture_exception(ValueError("in a scope"))
    finally:
        log.handlers.clear()
    assert client.flush(5)
    assert len(memory.envelopes) == 4
    for envelope in memory.envelopes:
        assert (envelope.trace_id, envelope.span_id) == expected, envelope.event.event_message
        assert f"trace_id:{expected[0]}" in (envelope.event.context_tags or [])


def test_ids_are_read_where_the_event_is_captured_not_when_it_is_sent(
    client: Client, memory: MemoryBackend
) -> None:
    with TRACER.start_as_current_span("outer") as outer:
        with TRACER.start_as_current_span("inner") as inner:
            client.send_event_async(client.create_new_app_event("error", event_message="inner"))
        client.send_event_async(client.create_new_app_event("error", event_message="outer"))
    client.send_event_async(client.create_new_app_event("error", event_message="none"))
    assert client.flush(5)
    got = {e.event.event_message: (e.trace_id, e.span_id) for e in memory.envelopes}
    assert got == {"inner": ids(inner), "outer": ids(outer), "none": (None, None)}
    assert ids(inner)[0] == ids(outer)[0] and ids(inner)[1] != ids(outer)[1]


def test_a_thread_without_the_context_has_no_span(client: Client, memory: MemoryBackend) -> None:
    def work() -> None:
        client.send_event_async(client.create_new_app_event("error", event_message="thread"))

    with TRACER.start_as_current_span("request"):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(5)
    assert client.flush(5)
    assert memory.envelopes[0].trace_id is None


def test_an_invalid_span_is_ignored(client: Client, memory: MemoryBackend) -> None:
    with otel.use_span(otel.INVALID_SPAN):
        client.send_event_async(client.create_new_app_event("error"))
    assert client.flush(5)
    assert memory.envelopes[0].trace_id is None


def test_the_span_is_read_where_get_current_span_looks(
    client: Client, memory: MemoryBackend
) -> None:
    """With the API on its default runtime context, "no span" is one read of OpenTelemetry's own
    context variable; a handler's events with and without a span get what the API says."""
    log = logging.getLogger("tests.trace.direct")
    log.propagate = False
    log.addHandler(AlertHandler(client=client))
    try:
        log.error("before any span")
        assert trace.span_variable is not None and trace.span_key  # found at the first event
        with TRACER.start_as_current_span("work") as span:
            log.error("in the span")
            with otel.use_span(otel.INVALID_SPAN):
                log.error("in an invalid span")
        log.error("after the span")
    finally:
        log.handlers.clear()
    assert client.flush(5)
    got = {e.event.event_message: (e.trace_id, e.span_id) for e in memory.envelopes}
    none = (None, None)
    assert got == {
        "before any span": none,
        "in the span": ids(span),
        "in an invalid span": none,
        "after the span": none,
    }


def test_another_runtime_context_is_asked_through_the_api(
    client: Client, memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime context other than the API's default (``OTEL_PYTHON_CONTEXT``) is never read
    behind the API's back: the API is asked for every event."""
    import opentelemetry.context as otel_context

    class Wrapped(type(otel_context._RUNTIME_CONTEXT)):  # type: ignore[misc]
        """Another class: the variable it keeps is not assumed to be where the span is."""

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", Wrapped())
    monkeypatch.setattr(trace, "span_variable", None)
    trace._find_span_variable()
    assert trace.span_variable is None
    with TRACER.start_as_current_span("elsewhere") as span:
        client.send_event_async(client.create_new_app_event("error", event_message="in"))
    client.send_event_async(client.create_new_app_event("error", event_message="out"))
    assert client.flush(5)
    got = {e.event.event_message: (e.trace_id, e.span_id) for e in memory.envelopes}
    assert got == {"in": ids(span), "out": (None, None)}


# -- traceparent (W3C Trace Context level 1, section 3.2) ------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADER, ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")),
        (HEADER.encode(), ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")),
        (f"  {HEADER} ", ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")),
        ("01" + HEADER[2:] + "-future", ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")),
        (HEADER + "-extra", None),  # version 00 is exactly 55 characters
        ("ff" + HEADER[2:], None),  # version ff is invalid
        ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None),  # all-zero trace id
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", None),  # all-zero parent
        (HEADER.upper(), None),  # lowercase hex only
        (HEADER.replace("-", "_"), None),
        (HEADER[:-1], None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", None),
        ("", None),
        (None, None),
        (b"\xff" * 55, None),
    ],
)
def test_traceparent_is_validated_per_the_w3c_spec(
    header: str | bytes | None, expected: tuple[str, str] | None
) -> None:
    assert parse_traceparent(header) == expected


def test_a_scope_continues_the_incoming_trace_when_no_span_is_active(
    client: Client, memory: MemoryBackend
) -> None:
    with client.scope() as scope:
        continue_trace(scope, [HEADER.encode()])
        client.send_event_async(client.create_new_app_event("error", event_message="joined"))
        with TRACER.start_as_current_span("local") as span:
            client.send_event_async(client.create_new_app_event("error", event_message="span"))
    assert client.flush(5)
    got = {e.event.event_message: (e.trace_id, e.span_id) for e in memory.envelopes}
    assert got["joined"] == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert got["span"] == ids(span), "a span active at capture wins over the header"


@pytest.mark.parametrize("values", [[b"garbage"], [HEADER.encode(), HEADER.encode()], []], ids=str)
def test_a_bad_or_repeated_traceparent_is_ignored(client: Client, values: list[bytes]) -> None:
    with client.scope() as scope:
        continue_trace(scope, values)
        assert scope.trace is None


def test_no_header_is_read_while_a_span_is_active(client: Client) -> None:
    with TRACER.start_as_current_span("server"), client.scope() as scope:
        continue_trace(scope, HEADER)
        assert scope.trace is None


# -- shown on each backend --------------------------------------------------------------------


def traced_envelope(client: Client) -> Envelope:
    event = client.create_new_app_event("error", event_message="with ids")
    envelope = client.envelope_for(event)
    envelope.trace_id, envelope.span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    return envelope


def test_notifiers_show_the_ids_beside_the_event_id(client: Client) -> None:
    fields = dict(summarize(traced_envelope(client)).fields)
    assert fields["Trace id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert fields["Span id"] == "00f067aa0ba902b7"
    assert "Trace id" not in dict(
        summarize(client.envelope_for(client.create_new_app_event())).fields
    )


def test_pagerduty_puts_the_ids_in_custom_details(client: Client) -> None:
    with ScriptedServer() as server:
        made = Client(
            backends=[
                f"pagerduty://R0UTINGKEY0000000000000000000000?endpoint={server.url}/v2/enqueue"
            ],
            sample_system=False,
            register_atexit=False,
        )
        try:
            with TRACER.start_as_current_span("page") as span:
                made.send_event_async(made.create_new_app_event("error", event_message="page"))
            assert made.flush(5)
        finally:
            made.shutdown(2)
    details = server.requests[0].json()["payload"]["custom_details"]
    assert (details["trace_id"], details["span_id"]) == ids(span)


def test_the_event_api_gets_the_ids_as_tags(client: Client) -> None:
    with ScriptedServer() as server:
        made = Client(
            api_key="k",
            backends=[f"{server.url}/v1/events"],
            sample_system=False,
            register_atexit=False,
        )
        try:
            with TRACER.start_as_current_span("api") as span:
                made.send_event_async(made.create_new_app_event("error", event_message="api"))
            assert made.flush(5)
        finally:
            made.shutdown(2)
    trace_id, span_id = ids(span)
    body = server.requests[0].json()
    assert f"trace_id:{trace_id}" in body["contextTags"]
    assert f"span_id:{span_id}" in body["contextTags"]


def test_redis_keeps_the_ids_in_the_log_json(client: Client) -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0")
    message = json.loads(backend.log_json(traced_envelope(client)))
    assert message["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert message["span_id"] == "00f067aa0ba902b7"
    backend.close()


# -- the middleware, under real frameworks ---------------------------------------------------


def test_asgi_middleware_continues_the_callers_trace(client: Client, memory: MemoryBackend) -> None:
    with warnings.catch_warnings():  # Starlette asks for httpx2; the test extras install httpx
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    app = fastapi.FastAPI()

    @app.get("/fail")
    async def fail() -> None:
        raise LookupError("no such order")

    app.add_middleware(AsgiMiddleware, client=client)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/fail", headers={"traceparent": HEADER}).status_code == 500
        assert http.get("/fail", headers={"traceparent": "00-bad"}).status_code == 500
    assert client.flush(5)
    first, second = memory.envelopes
    assert (first.trace_id, first.span_id) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert (second.trace_id, second.span_id) == (None, None), "an invalid header is ignored"


def test_wsgi_middleware_continues_the_callers_trace(client: Client, memory: MemoryBackend) -> None:
    app = flask.Flask("tests_trace_wsgi")

    @app.get("/fail")
    def fail() -> str:
        logging.getLogger("tests.trace.wsgi").error("order lookup failed")
        return "degraded"

    app.wsgi_app = WsgiMiddleware(app.wsgi_app, client=client)  # type: ignore[method-assign]
    log = logging.getLogger("tests.trace.wsgi")
    log.propagate = False
    log.addHandler(AlertHandler(client=client))
    try:
        http = app.test_client()
        assert http.get("/fail", headers={"traceparent": HEADER}, buffered=True).status_code == 200
    finally:
        log.handlers.clear()
    assert client.flush(5)
    [escalation] = memory.envelopes  # the logged error folded into the request's escalation
    assert (escalation.trace_id, escalation.span_id) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
