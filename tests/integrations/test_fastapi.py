"""``init_app`` for FastAPI and Starlette in tiny real apps, driven by Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

import alertkit
from alertkit import Client, Envelope
from alertkit.capture.scope import ESCALATION_EVENT_TYPE
from alertkit.integrations import fastapi as fastapi_integration
from alertkit.integrations.starlette import init_app
from alertkit.testing import MemoryBackend

FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)


class PaymentError(Exception):
    pass


class StockError(Exception):
    pass


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(backends=[memory], sample_system=False, register_atexit=False, retry=FAST)
    yield made
    made.shutdown(2.0)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> None:
        raise PaymentError(f"card refused for order {order_id}")

    @app.get("/stock")
    def stock() -> None:  # a sync endpoint: runs in the thread pool
        raise StockError("warehouse unreachable")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("nobody handles this")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such order")

    @app.get("/overloaded")
    async def overloaded() -> None:
        raise HTTPException(status_code=503, detail="try later")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(PaymentError)
    async def payment_failed(request: Request, exc: PaymentError) -> JSONResponse:
        return JSONResponse({"error": "payment failed"}, status_code=500)

    return app


def sent(client: Client, memory: MemoryBackend) -> list[Envelope]:
    assert client.flush(5)
    return list(memory.envelopes)


def test_an_exception_the_app_handler_turns_into_a_500_is_reported_once(
    client: Client, memory: MemoryBackend
) -> None:
    """The middleware only sees a 500; the wrapped handler tells it which exception that was."""
    app = init_app(make_app(), client=client)
    with TestClient(app) as http:
        reply = http.get("/orders/7", headers={"Authorization": "Bearer s3cr3t"})
    assert (reply.status_code, reply.json()) == (500, {"error": "payment failed"})
    [event] = sent(client, memory)
    assert event.event.event_type == ESCALATION_EVENT_TYPE
    assert event.event.event_message == (
        "GET /orders/7 failed: PaymentError: card refused for order 7"
    )
    assert event.event.event_stacktrace[0].type.endswith("PaymentError")
    assert any(line.function == "order" for line in event.event.event_stacktrace[0].trace_lines)
    assert event.tags["transaction"] == "/orders/{order_id}"
    assert event.request_log is not None
    headers = event.request_log["api_logs"]["request"]["extras"]["headers"]
    assert headers["authorization"] == "[Filtered]"
    assert headers["host"] == "testserver"


def test_a_sync_handler_added_after_init_app_is_wrapped_too(
    client: Client, memory: MemoryBackend
) -> None:
    app = init_app(make_app(), client=client)

    @app.exception_handler(StockError)
    def stock_failed(request: Request, exc: StockError) -> PlainTextResponse:
        return PlainTextResponse("no stock", status_code=502)

    with TestClient(app) as http:
        assert http.get("/stock").status_code == 502
    [event] = sent(client, memory)
    assert event.event.event_message == "GET /stock failed: StockError: warehouse unreachable"


def test_http_exception_4xx_is_not_reported_but_5xx_is(
    client: Client, memory: MemoryBackend
) -> None:
    app = init_app(make_app(), client=client)
    with TestClient(app) as http:
        assert http.get("/missing").status_code == 404
        assert http.get("/ok").status_code == 200
        assert http.get("/overloaded").status_code == 503
    [event] = sent(client, memory)
    assert event.event.event_message == "GET /overloaded failed: HTTPException: 503: try later"
    assert event.event.event_stacktrace[0].type.endswith("HTTPException")


def test_failed_request_status_codes_can_include_404(client: Client, memory: MemoryBackend) -> None:
    app = init_app(make_app(), client=client, failed_request_status_codes=[404])
    with TestClient(app) as http:
        assert http.get("/missing").status_code == 404
        assert http.get("/overloaded").status_code == 503  # not listed any more
    [event] = sent(client, memory)
    assert event.event.event_message == "GET /missing failed: HTTPException: 404: no such order"


def test_an_unhandled_exception_is_reported_once(client: Client, memory: MemoryBackend) -> None:
    app = init_app(make_app(), client=client)
    with TestClient(app) as http, pytest.raises(RuntimeError):
        http.get("/crash")
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/crash").status_code == 500
    first, second = sent(client, memory)
    for event in (first, second):
        assert event.event.event_message == "GET /crash failed: RuntimeError: nobody handles this"


def test_an_app_wide_500_handler_still_reports_once(client: Client, memory: MemoryBackend) -> None:
    """A handler for Exception runs outside every middleware (Starlette's ServerErrorMiddleware)."""
    app = make_app()

    @app.exception_handler(Exception)
    async def sorry(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("sorry", status_code=500)

    init_app(app, client=client)
    with TestClient(app, raise_server_exceptions=False) as http:
        reply = http.get("/crash")
    assert (reply.status_code, reply.text) == (500, "sorry")
    [event] = sent(client, memory)
    assert event.event.event_stacktrace[0].type == "RuntimeError"


def test_a_handler_that_recovers_reports_nothing(client: Client, memory: MemoryBackend) -> None:
    app = make_app()

    @app.exception_handler(StockError)
    def stale(request: Request, exc: StockError) -> PlainTextResponse:
        return PlainTextResponse("stale stock")

    init_app(app, client=client)
    with TestClient(app) as http:
        assert http.get("/stock").text == "stale stock"
    assert sent(client, memory) == []


def test_a_plain_starlette_app(client: Client, memory: MemoryBackend) -> None:
    async def boom(request: Request) -> PlainTextResponse:
        raise PaymentError("declined")

    async def declined(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("declined", status_code=500)

    app = Starlette(
        routes=[Route("/pay", boom, name="pay")], exception_handlers={PaymentError: declined}
    )
    init_app(app, client=client)
    with TestClient(app) as http:
        assert http.get("/pay").status_code == 500
    [event] = sent(client, memory)
    assert event.event.event_message == "GET /pay failed: PaymentError: declined"
    assert event.tags["transaction"] == "/pay"


def test_init_app_twice_adds_one_middleware(client: Client, memory: MemoryBackend) -> None:
    app = fastapi_integration.init_app(init_app(make_app(), client=client), client=client)
    with TestClient(app) as http:
        assert http.get("/orders/1").status_code == 500
    assert len(sent(client, memory)) == 1


def test_bad_arguments_raise() -> None:
    with pytest.raises(TypeError, match="Starlette or FastAPI"):
        init_app(object())
    with pytest.raises(ValueError, match="failed_request_status_codes"):
        init_app(make_app(), failed_request_status_codes=["404"])  # type: ignore[list-item]
