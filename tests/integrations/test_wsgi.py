"""The WSGI middleware under a real Flask app and a plain streaming WSGI app."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

flask = pytest.importorskip("flask")
from werkzeug.test import Client as WerkzeugClient  # noqa: E402

import alertkit  # noqa: E402
from alertkit import AlertHandler, Client  # noqa: E402
from alertkit.capture.scope import ESCALATION_EVENT_TYPE, add_to_log, current_scope  # noqa: E402
from alertkit.integrations.wsgi import AlertkitMiddleware  # noqa: E402
from alertkit.testing import MemoryBackend  # noqa: E402
from tests.standins.pagerduty import PagerDutyStandIn  # noqa: E402

FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(backends=[memory], sample_system=False, register_atexit=False, retry=FAST)
    yield made
    made.shutdown(2.0)


def make_app(client: Client, *, propagate: bool, escalate_from: str = "error") -> Any:
    app = flask.Flask("tests_wsgi_app")
    app.config["PROPAGATE_EXCEPTIONS"] = propagate

    @app.get("/ok")
    def ok() -> str:
        add_to_log("cart", "loaded", tag="api_logs")
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        raise LookupError("no such order")

    @app.get("/slow-service")
    def slow_service() -> str:
        add_to_log("inventory", None, tag="service_logs", message="timed out", level="error")
        return "stale"

    app.wsgi_app = AlertkitMiddleware(
        app.wsgi_app,
        client=client,  # type: ignore[method-assign]
        escalate_from=escalate_from,
    )
    return app


def test_one_request_escalates_and_another_does_not(client: Client, memory: MemoryBackend) -> None:
    """A clean Flask request sends nothing; one with a failed service call escalates once."""
    http = make_app(client, propagate=False).test_client()
    assert http.get("/ok", buffered=True).status_code == 200
    assert client.flush(5)
    assert memory.envelopes == []
    assert http.get("/slow-service", buffered=True).status_code == 200
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.context_url == "http://localhost/slow-service"
    assert sent.request_log is not None
    request = sent.request_log["api_logs"]["request"]
    assert (request["value"], request["code"]) == ("GET /slow-service", 200)
    assert request["extras"].pop("headers")["host"] == "localhost"
    assert request["extras"] == {"method": "GET", "path": "/slow-service", "status": 200}
    assert current_scope() is None


def test_propagated_exception_escalates_with_its_trace(
    client: Client, memory: MemoryBackend
) -> None:
    """With PROPAGATE_EXCEPTIONS the exception passes through the middleware unchanged and the
    escalation carries its stack trace."""
    http = make_app(client, propagate=True).test_client()
    with pytest.raises(LookupError, match="no such order"):
        http.get("/boom", buffered=True)
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.event_stacktrace[0].type == "LookupError"
    assert any(line.function == "boom" for line in sent.event.event_stacktrace[0].trace_lines)
    assert sent.request_log is not None
    assert sent.request_log["api_logs"]["request"]["code"] == 500
    assert "no such order" in sent.request_log["error_logs"]["LookupError"]["error_trace"]
    assert current_scope() is None


def test_flask_500_is_one_event_headed_by_flask_log(client: Client, memory: MemoryBackend) -> None:
    """Flask answers 500 itself and logs the exception: that record (through AlertHandler) is
    folded into the request's escalation, one event with its traceback, not two."""
    app = make_app(client, propagate=False)
    handler = AlertHandler(client=client)
    app.logger.addHandler(handler)
    try:
        assert app.test_client().get("/boom", buffered=True).status_code == 500
    finally:
        app.logger.removeHandler(handler)
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.event_message == "GET /boom -> 500: LookupError: Exception on /boom [GET]"
    assert sent.event.event_stacktrace[0].type == "LookupError"
    assert sent.logger_name == app.logger.name
    assert sent.request_log is not None
    assert sent.request_log["api_logs"]["request"]["code"] == 500
    [(key, entry)] = sent.request_log["error_logs"].items()
    assert key == app.logger.name
    assert "LookupError: no such order" in entry["error_trace"]
    assert sent.event.context_cross_app_correlation_id == sent.request_log["alert_id"]


def test_exception_below_escalate_from_is_captured_once(
    client: Client, memory: MemoryBackend
) -> None:
    """Below escalate_from the unhandled exception is one error event with the request context."""
    http = make_app(client, propagate=True, escalate_from="fatal").test_client()
    with pytest.raises(LookupError):
        http.get("/boom", buffered=True)
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == "LookupError"
    assert sent.event.context_url == "http://localhost/boom"
    assert sent.details["request"].pop("headers")["host"] == "localhost"
    assert sent.details == {"request": {"method": "GET", "path": "/boom", "status": 500}}


def streaming_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A plain WSGI app whose body fails half-way through."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body() -> Iterator[bytes]:
        add_to_log("export", "started", tag="api_logs")
        yield b"first chunk\n"
        raise OSError("disk vanished")

    return body()


def test_error_while_streaming_the_body_is_caught(client: Client, memory: MemoryBackend) -> None:
    """The scope stays current while the body is iterated; an error there escalates and
    propagates."""
    http = WerkzeugClient(AlertkitMiddleware(streaming_app, client=client))
    with pytest.raises(OSError, match="disk vanished"):
        http.get("/export", buffered=True)
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.request_log is not None
    assert sent.request_log["api_logs"]["export"]["value"] == "started"
    assert sent.request_log["api_logs"]["request"]["code"] == 200
    assert "disk vanished" in sent.request_log["error_logs"]["OSError"]["error_trace"]
    assert current_scope() is None


def test_scope_ends_when_the_body_is_sent_even_without_close(
    client: Client, memory: MemoryBackend
) -> None:
    """A server that iterates the body but never calls close() does not leak the scope."""
    http = make_app(client, propagate=False).test_client()
    reply = http.get("/slow-service")  # werkzeug closes only buffered responses
    assert reply.get_data() == b"stale"
    assert current_scope() is None
    assert client.flush(5)
    assert len(memory.envelopes) == 1


def test_close_is_passed_on_and_ends_the_scope(client: Client, memory: MemoryBackend) -> None:
    """The app's iterable is closed through the middleware, and the scope ends at close()."""
    closed: list[bool] = []
    seen: list[object] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            seen.append(current_scope())
            yield b"ok"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("503 Service Unavailable", [])
        return Body()

    http = WerkzeugClient(AlertkitMiddleware(app, client=client))
    assert http.get("/", buffered=True).status_code == 503
    assert closed == [True]
    assert seen[0] is not None
    assert current_scope() is None
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_message == "GET / -> 503"


# -- one page per failing request: a real PagerDuty stand-in behind Flask's test client ------------


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn() as server:
        yield server


@pytest.fixture
def pd_client(pd: PagerDutyStandIn) -> Iterator[Client]:
    made = Client(backends=[pd.url()], sample_system=False, register_atexit=False, retry=FAST)
    yield made
    made.shutdown(2.0)


@pytest.fixture
def shop(pd_client: Client) -> Iterator[Any]:
    """A Flask app that reports its own logger's errors, as docs/integrations.md shows."""
    app = flask.Flask("tests_wsgi_shop")
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/pay")
    def pay() -> str:
        add_to_log("cart", "c-7", tag="api_logs")
        app.logger.error("card declined for cart %s", "c-7", extra={"incident_key": "payments"})
        return "declined"

    @app.get("/pay-twice")
    def pay_twice() -> str:
        app.logger.error("card declined for cart %s", "c-8")
        app.logger.error("refund failed for cart %s", "c-8")
        return "declined"

    @app.get("/crash")
    def crash() -> str:
        raise LookupError("order index corrupt")

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "maintenance", 503

    handler = AlertHandler(client=pd_client)
    app.logger.addHandler(handler)
    app.wsgi_app = AlertkitMiddleware(app.wsgi_app, client=pd_client)  # type: ignore[method-assign]
    yield app
    app.logger.removeHandler(handler)


def pd_bodies(pd: PagerDutyStandIn, client: Client) -> list[dict[str, Any]]:
    assert client.flush(5)
    assert pd.invalid == [], pd.invalid
    return pd.bodies


def test_one_logged_error_pages_once_with_the_request_log(
    pd: PagerDutyStandIn, pd_client: Client, shop: Any
) -> None:
    """A Flask request that logs one error is one PagerDuty trigger with the request log; the
    key the application chose for that error (extra incident_key) is the trigger's key."""
    assert shop.test_client().get("/pay", buffered=True).status_code == 200
    [body] = pd_bodies(pd, pd_client)
    details = body["payload"]["custom_details"]
    assert body["dedup_key"] == "payments"
    assert body["payload"]["summary"] == (
        "request escalation: GET /pay -> 200: tests_wsgi_shop: card declined for cart c-7"
    )
    assert details["request_log"]["api_logs"]["cart"]["value"] == "c-7"
    assert details["request_log"]["api_logs"]["request"]["code"] == 200
    assert details["errors"] == ["tests_wsgi_shop: card declined for cart c-7"]


def test_two_logged_errors_page_once_keyed_by_the_request(
    pd: PagerDutyStandIn, pd_client: Client, shop: Any
) -> None:
    """Two errors in one Flask request: one trigger, keyed by the alert id, headed by the first."""
    assert shop.test_client().get("/pay-twice", buffered=True).status_code == 200
    [body] = pd_bodies(pd, pd_client)
    details = body["payload"]["custom_details"]
    assert body["dedup_key"] == details["request_log"]["alert_id"]
    assert body["payload"]["summary"].endswith(
        "-> 200: tests_wsgi_shop: card declined for cart c-8"
    )
    assert len(details["request_log"]["error_logs"]) == 2


def test_a_5xx_or_flask_own_500_pages_once(
    pd: PagerDutyStandIn, pd_client: Client, shop: Any
) -> None:
    """A 503 with nothing logged pages once; an exception Flask turns into a 500 (and logs) pages
    once, with the traceback Flask logged."""
    http = shop.test_client()
    assert http.get("/unavailable", buffered=True).status_code == 503
    assert http.get("/crash", buffered=True).status_code == 500
    first, second = pd_bodies(pd, pd_client)
    assert first["payload"]["summary"] == "request escalation: GET /unavailable -> 503"
    assert second["payload"]["summary"] == (
        "request escalation: GET /crash -> 500: LookupError: Exception on /crash [GET]"
    )
    assert "LookupError: order index corrupt" in second["payload"]["custom_details"]["stack_trace"]
    assert first["dedup_key"] != second["dedup_key"]


def test_a_quiet_request_leaves_nothing_to_the_cyclic_collector(client: Client) -> None:
    """A request that ends well is freed as it ends: no reference cycle (the request and its
    pending scope once held each other, leaving every request to the collector)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = AlertkitMiddleware(app, client=client)
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            environ: dict[str, Any] = {}
            setup_testing_defaults(environ)
            result = wrapped(environ, lambda status, headers, exc_info=None: None)
            assert b"".join(result) == b"ok"
            result.close()  # type: ignore[attr-defined]
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0
