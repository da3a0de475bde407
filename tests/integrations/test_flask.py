"""``alertkit.integrations.flask.init_app`` in a tiny real Flask app, driven by Flask's test client."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from flask import Flask, Response, abort, stream_with_context

import alertkit
from alertkit import AlertHandler, Client, Envelope
from alertkit.capture.scope import ESCALATION_EVENT_TYPE, add_to_log, current_scope
from alertkit.integrations import current_request
from alertkit.integrations.flask import init_app
from alertkit.testing import MemoryBackend, capture_events

FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)


class PaymentError(Exception):
    pass


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(backends=[memory], sample_system=False, register_atexit=False, retry=FAST)
    yield made
    made.shutdown(2.0)


@pytest.fixture
def app_log(client: Client) -> Iterator[logging.Logger]:
    """The app's logger, from INFO, with an AlertHandler on the test's client (removed after)."""
    log = logging.getLogger("tests.flask.app")
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = AlertHandler(client=client)
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)
    log.setLevel(level)
    log.propagate = propagate


def make_app() -> Flask:
    app = Flask("shop")

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        raise PaymentError(f"card refused for order {order_id}")

    @app.get("/missing")
    def missing() -> str:
        abort(404)

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "down", 503

    return app


def sent(client: Client, memory: MemoryBackend) -> list[Envelope]:
    assert client.flush(5)
    return list(memory.envelopes)


def test_an_exception_flask_turns_into_a_500_is_reported_once(
    client: Client, memory: MemoryBackend
) -> None:
    """One event with the exception's trace, the endpoint as transaction, headers masked."""
    app = init_app(make_app(), client=client)
    reply = app.test_client().get(
        "/orders/7", headers={"Authorization": "Bearer s3cr3t", "X-Request-Id": "r-1"}
    )
    assert reply.status_code == 500
    [event] = sent(client, memory)
    assert event.event.event_type == ESCALATION_EVENT_TYPE
    assert event.event.event_message == (
        "GET /orders/7 failed: PaymentError: card refused for order 7"
    )
    assert event.event.event_stacktrace[0].type.endswith("PaymentError")
    assert any(line.function == "order" for line in event.event.event_stacktrace[0].trace_lines)
    assert event.tags["transaction"] == "order"
    assert event.event.context_url == "http://localhost/orders/7"
    assert event.request_log is not None
    request = event.request_log["api_logs"]["request"]
    assert request["code"] == 500
    assert request["extras"]["headers"]["x-request-id"] == "r-1"
    assert request["extras"]["headers"]["authorization"] == "[Filtered]"
    assert "s3cr3t" not in str(event.request_log)


def test_flask_own_exception_log_line_is_not_a_second_report(
    client: Client, memory: MemoryBackend
) -> None:
    """Flask logs "Exception on /orders/7 [GET]" on app.logger: absorbed, one error_logs entry."""
    app = init_app(make_app(), client=client)
    handler = AlertHandler(client=client)
    app.logger.addHandler(handler)
    try:
        assert app.test_client().get("/orders/7").status_code == 500
    finally:
        app.logger.removeHandler(handler)
    [event] = sent(client, memory)
    assert event.event.event_message.startswith("GET /orders/7 failed: PaymentError")
    assert event.request_log is not None
    assert len(event.request_log["error_logs"]) == 1


def test_a_propagated_exception_is_reported_once(client: Client, memory: MemoryBackend) -> None:
    """With PROPAGATE_EXCEPTIONS (testing mode) the exception passes the middleware: once."""
    app = init_app(make_app(), client=client)
    app.testing = True
    with pytest.raises(PaymentError):
        app.test_client().get("/orders/8")
    [event] = sent(client, memory)
    assert (
        event.event.event_message == "GET /orders/8 failed: PaymentError: card refused for order 8"
    )


def test_a_custom_500_page_still_reports_the_exception(
    client: Client, memory: MemoryBackend
) -> None:
    app = make_app()

    @app.errorhandler(500)
    def oops(error: Exception) -> tuple[str, int]:
        return "sorry", 500

    init_app(app, client=client)
    reply = app.test_client().get("/orders/9")
    assert (reply.status_code, reply.text) == (500, "sorry")
    [event] = sent(client, memory)
    assert event.event.event_stacktrace[0].type.endswith("PaymentError")


def test_success_and_404_send_nothing_but_5xx_do(client: Client, memory: MemoryBackend) -> None:
    http = init_app(make_app(), client=client).test_client()
    assert http.get("/ok").status_code == 200
    assert http.get("/missing").status_code == 404
    assert http.get("/unavailable").status_code == 503
    [event] = sent(client, memory)
    assert event.event.event_message == "GET /unavailable -> 503"
    assert event.tags["transaction"] == "unavailable"


def test_failed_request_status_codes_choose_what_is_reported(
    client: Client, memory: MemoryBackend
) -> None:
    http = init_app(make_app(), client=client, failed_request_status_codes=[404]).test_client()
    assert http.get("/missing").status_code == 404
    assert http.get("/unavailable").status_code == 503  # not listed: a warning only
    [event] = sent(client, memory)
    assert event.event.event_message == "GET /missing -> 404"


def test_init_app_twice_reports_once(client: Client, memory: MemoryBackend) -> None:
    app = init_app(init_app(make_app(), client=client), client=client)
    assert app.test_client().get("/orders/1").status_code == 500
    assert len(sent(client, memory)) == 1


def test_the_default_client_is_taken_at_request_time() -> None:
    """init_app before alertkit.init (here: capture_events) still reports to the default."""
    app = init_app(make_app())
    with capture_events() as events:
        assert app.test_client().get("/orders/2").status_code == 500
    [event] = events
    assert event.event_message.startswith("GET /orders/2 failed")


def test_bad_options_raise_at_init_app() -> None:
    with pytest.raises(ValueError, match="failed_request_status_codes"):
        init_app(make_app(), failed_request_status_codes=[0])
    with pytest.raises(ValueError, match="level"):
        init_app(make_app(), escalate_from="loud")


def test_no_web_framework_is_imported_until_an_integration_is_used() -> None:
    """``import alertkit`` (and the integrations package, and the bare middlewares) import no
    framework: each is an optional extra."""
    code = (
        "import sys, alertkit, alertkit.integrations, alertkit.integrations.asgi, "
        "alertkit.integrations.wsgi\n"
        "loaded = sorted(m for m in ('django', 'flask', 'starlette', 'fastapi', 'werkzeug') "
        "if m in sys.modules)\n"
        "print(loaded)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_request_makes_its_scope_only_when_used(client: Client, memory: MemoryBackend) -> None:
    """A request that captures nothing has no scope; the first use makes it, dated from the
    request's start, with the request line already in its log."""
    seen: dict[str, object] = {}
    app = make_app()

    @app.get("/lazy")
    def lazy() -> str:
        request = current_request()
        assert request is not None
        seen["before"] = request.made
        time.sleep(0.02)
        add_to_log("step", "one", tag="api_logs", level="error")  # makes the scope, escalates
        seen["after"] = request.made
        return "ok"

    http = init_app(app, client=client).test_client()
    assert http.get("/ok").status_code == 200
    assert http.get("/lazy").status_code == 200
    assert seen["before"] is None
    assert seen["after"] is not None
    [event] = sent(client, memory)
    assert event.request_log is not None
    assert list(event.request_log["api_logs"]) == ["request", "step"]
    assert event.request_log["time_elapsed"] >= 0.02
    assert event.tags["transaction"] == "lazy"
    assert current_scope() is None


def test_a_request_has_its_own_breadcrumbs(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    log = app_log
    app = make_app()

    @app.get("/crumbs")
    def crumbs() -> str:
        log.info("inside the request")
        log.error("failed inside")
        return "ok"

    log.info("before any request")
    http = init_app(app, client=client).test_client()
    assert http.get("/crumbs").status_code == 200
    log.error("after the request")
    by_message = {e.event.event_message: e for e in sent(client, memory)}
    inside = by_message["GET /crumbs -> 200: tests.flask.app: failed inside"]
    assert [c["message"] for c in inside.breadcrumbs] == ["inside the request"]
    assert inside.tags["transaction"] == "crumbs"
    assert [c["message"] for c in by_message["after the request"].breadcrumbs] == [
        "before any request"
    ]


def test_what_a_streamed_body_logs_is_never_lost(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """A body streamed with ``stream_with_context`` runs after ``wsgi_app`` returned (Flask 3.1
    pushes the request context again around it): what it logs is delivered, in the request's
    report while Flask still holds the request, else as an event of its own."""
    log = app_log
    app = make_app()

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            log.error("stream broke at %s", "b")
            yield "b"

        return Response(stream_with_context(body()))

    http = init_app(app, client=client).test_client()
    response = http.get("/stream")
    assert response.get_data() == b"ab"
    response.close()
    [event] = sent(client, memory)
    assert "stream broke at b" in event.event.event_message
    assert current_scope() is None


def test_what_a_teardown_function_logs_is_the_requests(
    client: Client, memory: MemoryBackend
) -> None:
    """The request ends after the app's teardown functions: an error one logs belongs to it."""
    app = make_app()

    @app.teardown_request
    def tear_down(exc: BaseException | None) -> None:
        add_to_log("teardown", "closing failed", tag="api_logs", level="error")

    http = init_app(app, client=client).test_client()
    assert http.get("/ok").status_code == 200
    [event] = sent(client, memory)
    assert event.request_log is not None
    assert list(event.request_log["api_logs"]) == ["request", "teardown"]
    assert event.tags["transaction"] == "ok"


def test_a_request_is_found_through_flasks_context_not_made_current(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """Flask keeps the request context: alertkit finds its request through it, so a request
    makes no context switch of its own and no request object until something needs one."""
    from alertkit.capture.current import current

    seen: dict[str, object] = {}
    app = make_app()

    @app.get("/look")
    def look() -> str:
        seen["ours"] = current.get()
        request = current_request()
        seen["found"] = request
        with client.scope() as inner:  # a scope opened inside the request inherits from it
            seen["inner_outer"] = inner.outer
            app_log.error("inside an inner scope")
        return "ok"

    http = init_app(app, client=client).test_client()
    assert http.get("/look").status_code == 200
    assert seen["ours"] is None
    assert seen["found"] is not None
    assert seen["inner_outer"] is seen["found"]
    [event] = sent(client, memory)
    assert event.event.event_message == "inside an inner scope"
    assert event.tags["transaction"] == "look"
    assert current_request() is None
