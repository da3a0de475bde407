"""The ASGI middleware under a real FastAPI app: a scope per request, escalation, propagation."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI, HTTPException  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402

with warnings.catch_warnings():  # Starlette asks for httpx2; the test extras install httpx
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

import alertkit  # noqa: E402
from alertkit import AlertHandler, Client, Envelope  # noqa: E402
from alertkit.capture import fold as _fold  # noqa: E402
from alertkit.capture.scope import ESCALATION_EVENT_TYPE, add_to_log, current_scope, set_user  # noqa: E402
from alertkit.integrations.asgi import AlertkitMiddleware  # noqa: E402
from alertkit.testing import MemoryBackend, capture_events  # noqa: E402
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


def make_app(client: Client | None, escalate_from: str = "error") -> FastAPI:
    app = FastAPI()
    log = logging.getLogger("tests.asgi.app")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        add_to_log("cart", "loaded", tag="api_logs")
        return {"status": "ok"}

    @app.get("/degraded")
    def degraded() -> dict[str, str]:  # a sync endpoint: runs in the thread pool
        add_to_log("inventory", None, tag="service_logs", message="timed out", level="error")
        log.warning("served stale inventory")
        return {"status": "stale"}

    @app.get("/boom")
    async def boom() -> None:
        set_user("jill@example.com")
        raise RuntimeError("payment service exploded")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such item")

    @app.get("/items/{n}")
    async def item(n: int) -> dict[str, int]:
        add_to_log("item", n, tag="api_logs")
        await asyncio.sleep(0)
        add_to_log(f"failure{n}", n, tag="error_logs", level="error")
        await asyncio.sleep(0)
        return {"n": n}

    app.add_middleware(AlertkitMiddleware, client=client, escalate_from=escalate_from)
    return app


def get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    """GET each path in turn through httpx's ASGI transport (app exceptions are re-raised)."""

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return [await http.get(path) for path in paths]

    return asyncio.run(main())


def escalations(memory: MemoryBackend) -> list[Envelope]:
    return [e for e in memory.envelopes if e.event.event_type == ESCALATION_EVENT_TYPE]


def test_one_request_escalates_and_another_does_not(client: Client, memory: MemoryBackend) -> None:
    """A clean request sends nothing; a request whose service call failed escalates once, with
    method, path and status in its request log."""
    app = make_app(client)
    [reply] = get(app, "/ok")
    assert reply.status_code == 200
    assert client.flush(5)
    assert memory.envelopes == []
    [reply] = get(app, "/degraded")
    assert reply.status_code == 200
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.log_level == "error"
    assert sent.event.context_url == "http://testserver/degraded"
    log = sent.request_log
    assert log is not None
    request = log["api_logs"]["request"]
    assert request["value"] == "GET /degraded"
    assert request["code"] == 200
    headers = request["extras"].pop("headers")
    assert request["extras"] == {"method": "GET", "path": "/degraded", "status": 200}
    assert headers["host"] == "testserver"
    assert sent.tags["transaction"] == "/degraded"
    assert log["service_logs"]["inventory"]["message"] == "timed out"
    assert log["end_time"] is not None
    assert sent.event.event_message == "GET /degraded -> 200"


def test_unhandled_exception_escalates_with_its_trace_and_propagates(
    client: Client, memory: MemoryBackend
) -> None:
    """The exception reaches the framework unchanged, and one event carries the stack trace,
    the request context and the 500 status."""
    with pytest.raises(RuntimeError, match="exploded"):
        get(make_app(client), "/boom?token=secret")
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.event_stacktrace[0].type == "RuntimeError"
    assert any(line.function == "boom" for line in sent.event.event_stacktrace[0].trace_lines)
    assert "RuntimeError: payment service exploded" in (sent.exc_text or "")
    assert sent.event.event_message == "GET /boom failed: RuntimeError: payment service exploded"
    assert sent.event.event_user == "jill@example.com"
    assert sent.event.context_url == "http://testserver/boom"  # no query: it may hold secrets
    assert sent.request_log is not None
    assert sent.request_log["api_logs"]["request"]["code"] == 500
    assert "exploded" in sent.request_log["error_logs"]["RuntimeError"]["error_trace"]
    assert sent.event.context_cross_app_correlation_id == sent.request_log["alert_id"]


def test_exception_below_escalate_from_is_still_captured_once(
    client: Client, memory: MemoryBackend
) -> None:
    """With escalate_from="fatal" an unhandled error does not escalate but is sent as an error
    event with the request's context."""
    with pytest.raises(RuntimeError):
        get(make_app(client, escalate_from="fatal"), "/boom")
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == "RuntimeError"
    assert sent.event.log_level == "error"
    assert sent.request_log is None
    assert sent.event.context_url == "http://testserver/boom"
    assert sent.details["request"].pop("headers")["host"] == "testserver"
    assert sent.details == {"request": {"method": "GET", "path": "/boom", "status": 500}}


def test_http_errors_are_warnings(client: Client, memory: MemoryBackend) -> None:
    """A 404 makes the request a warning: no escalation at error, one at warning."""
    assert get(make_app(client), "/missing")[0].status_code == 404
    assert client.flush(5)
    assert memory.envelopes == []
    assert get(make_app(client, escalate_from="warning"), "/missing")[0].status_code == 404
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.log_level == "warning"
    assert sent.request_log is not None
    assert sent.request_log["api_logs"]["request"]["message"] == "Not Found"


def test_logged_errors_in_a_request_reach_the_escalation(
    client: Client, memory: MemoryBackend
) -> None:
    """Through AlertHandler, a warning logged by a sync endpoint carries the request's
    correlation id and URL, like the escalation does."""
    logger = logging.getLogger("tests.asgi.app")
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        get(make_app(client), "/degraded")
    finally:
        logger.removeHandler(handler)
    assert client.flush(5)
    [warning] = [e for e in memory.envelopes if e.event.event_type == "tests.asgi.app"]
    [sent] = escalations(memory)
    assert sent.request_log is not None
    assert warning.event.context_cross_app_correlation_id == sent.request_log["alert_id"]
    assert warning.event.context_url == "http://testserver/degraded"


def test_concurrent_requests_keep_their_own_scope(client: Client, memory: MemoryBackend) -> None:
    """30 interleaved requests on one event loop: each escalation holds only its own entries."""
    app = make_app(client)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            replies = await asyncio.gather(*(http.get(f"/items/{n}") for n in range(30)))
        assert all(r.status_code == 200 for r in replies)

    asyncio.run(main())
    assert client.flush(5)
    sent = escalations(memory)
    assert len(sent) == 30
    for envelope in sent:
        log = envelope.request_log
        assert log is not None
        n = log["api_logs"]["item"]["value"]
        assert list(log["error_logs"]) == [f"failure{n}"]
        assert log["api_logs"]["request"]["value"] == f"GET /items/{n}"
    assert current_scope() is None


def test_default_client_is_taken_at_request_time() -> None:
    """Without client=, the middleware uses alertkit.get_client() when the request comes."""
    app = make_app(None)
    with capture_events() as events:
        get(app, "/degraded")
    [event] = events
    assert event.event_type == ESCALATION_EVENT_TYPE


async def _lifespan_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    assert current_scope() is None
    message = await receive()
    assert message["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.complete"})


def test_non_http_connections_pass_through(client: Client, memory: MemoryBackend) -> None:
    """lifespan (and websocket) connections get no scope and no request log."""
    app = AlertkitMiddleware(_lifespan_app, client=client)
    sent: list[dict[str, str]] = []

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert client.flush(5)
    assert memory.envelopes == []


def test_bad_escalate_from_is_rejected() -> None:
    """escalate_from is checked when the middleware is built, not at the first request."""
    with pytest.raises(ValueError, match="unknown log level"):
        AlertkitMiddleware(_lifespan_app, escalate_from="loud")


@pytest.mark.allow_internal_errors
def test_a_broken_default_client_does_not_break_requests(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[BaseException]
) -> None:
    """If the default client cannot be made, requests still run (without a scope) and the
    problem is reported to alertkit's internal log."""
    from alertkit.capture import submit

    monkeypatch.setattr(submit, "_default", None)
    monkeypatch.setenv("ALERTKIT_BACKENDS", "nosuchscheme://x")
    [reply] = get(make_app(None), "/ok")
    assert reply.status_code == 200
    assert [type(e).__name__ for e in internal_errors] == ["ConfigError"]
    assert submit._default is None


# -- one page per failing request: a real PagerDuty stand-in behind Starlette's TestClient ---------


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
def shop_log(pd_client: Client) -> Iterator[logging.Logger]:
    """The application's logger, reporting through AlertHandler as the docs recommend."""
    logger = logging.getLogger("tests.asgi.shop")
    handler = AlertHandler(client=pd_client)
    logger.addHandler(handler)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)
    logger.propagate = True


def shop_app(client: Client, log: logging.Logger) -> FastAPI:
    app = FastAPI()

    @app.get("/pay")
    async def pay() -> dict[str, str]:
        add_to_log("cart", "c-7", tag="api_logs")
        try:
            raise ConnectionError("card processor unreachable")
        except ConnectionError:
            log.exception("payment failed for cart %s", "c-7", extra={"cart": "c-7"})
        return {"status": "queued"}

    @app.get("/pay-twice")
    def pay_twice() -> dict[str, str]:  # sync: runs in the thread pool, in the request's context
        log.error("card declined for cart %s", "c-8")
        log.error("refund failed for cart %s", "c-8")
        return {"status": "declined"}

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(status_code=503, detail="maintenance")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("inventory index corrupt")

    app.add_middleware(AlertkitMiddleware, client=client, escalate_from="error")
    return app


def pd_bodies(pd: PagerDutyStandIn, client: Client) -> list[dict[str, Any]]:
    assert client.flush(5)
    assert pd.invalid == [], pd.invalid
    return pd.bodies


def test_one_logged_error_pages_once_with_the_request_log(
    pd: PagerDutyStandIn, pd_client: Client, shop_log: logging.Logger
) -> None:
    """A request that logs one error is one PagerDuty trigger, keyed by the request's alert id,
    headed by the logged error, carrying its stack trace and the whole request log."""
    with TestClient(shop_app(pd_client, shop_log)) as http:
        assert http.get("/pay").status_code == 200
    [body] = pd_bodies(pd, pd_client)
    details = body["payload"]["custom_details"]
    log = details["request_log"]
    assert body["dedup_key"] == log["alert_id"] == details["alert_id"]
    assert body["payload"]["summary"] == (
        "request escalation: GET /pay -> 200: ConnectionError: payment failed for cart c-7"
    )
    assert body["payload"]["component"] == "tests.asgi.shop"
    assert "ConnectionError: card processor unreachable" in details["stack_trace"]
    assert details["cart"] == "c-7"  # the record's extra fields stay with it
    assert log["api_logs"]["request"]["code"] == 200
    assert log["api_logs"]["cart"]["value"] == "c-7"
    assert "ConnectionError" in log["error_logs"]["tests.asgi.shop"]["error_trace"]


def test_two_logged_errors_page_once_headed_by_the_first(
    pd: PagerDutyStandIn, pd_client: Client, shop_log: logging.Logger
) -> None:
    """Two different errors in one request are still one trigger: the first is the headline, both
    are in the request log and in the details' error list."""
    with TestClient(shop_app(pd_client, shop_log)) as http:
        assert http.get("/pay-twice").status_code == 200
    [body] = pd_bodies(pd, pd_client)
    details = body["payload"]["custom_details"]
    assert body["payload"]["summary"].endswith(
        "GET /pay-twice -> 200: tests.asgi.shop: card declined for cart c-8"
    )
    assert details["errors"] == [
        "tests.asgi.shop: card declined for cart c-8",
        "tests.asgi.shop #2: refund failed for cart c-8",
    ]
    assert list(details["request_log"]["error_logs"]) == ["tests.asgi.shop", "tests.asgi.shop #2"]
    assert body["dedup_key"] == details["request_log"]["alert_id"]


def test_a_5xx_or_a_crash_without_a_logged_error_pages_once(
    pd: PagerDutyStandIn, pd_client: Client, shop_log: logging.Logger
) -> None:
    """What escalated before still escalates, once: a 5xx response, an unhandled exception."""
    with TestClient(shop_app(pd_client, shop_log), raise_server_exceptions=False) as http:
        assert http.get("/unavailable").status_code == 503
        assert http.get("/crash").status_code == 500
    first, second = pd_bodies(pd, pd_client)
    assert first["payload"]["summary"] == "request escalation: GET /unavailable -> 503"
    assert second["payload"]["summary"] == (
        "request escalation: GET /crash failed: RuntimeError: inventory index corrupt"
    )
    assert "inventory index corrupt" in second["payload"]["custom_details"]["stack_trace"]
    keys = [b["dedup_key"] for b in (first, second)]
    assert keys == [
        b["payload"]["custom_details"]["request_log"]["alert_id"] for b in (first, second)
    ]
    assert keys[0] != keys[1]


def test_a_long_stream_pages_while_it_still_runs(
    pd: PagerDutyStandIn,
    pd_client: Client,
    shop_log: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A streamed response that logs an error and goes on streaming pages after MAX_HOLD, not
    when the stream ends, and only once."""
    monkeypatch.setattr(_fold, "MAX_HOLD", 0.05)
    app = FastAPI()

    @app.get("/feed")
    async def feed() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            shop_log.error("price source lost")
            deadline = asyncio.get_running_loop().time() + 5
            while not pd.bodies and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)  # bounded wait for the stand-in to get the page
            yield b"paged while streaming" if pd.bodies else b"not paged"

        return StreamingResponse(body())

    app.add_middleware(AlertkitMiddleware, client=pd_client)
    with TestClient(app) as http:
        assert http.get("/feed").text == "paged while streaming"
    [body] = pd_bodies(pd, pd_client)
    assert body["payload"]["summary"] == (
        "request escalation: Request escalated at ERROR: tests.asgi.shop: price source lost"
    )
    assert body["dedup_key"] == body["payload"]["custom_details"]["request_log"]["alert_id"]
