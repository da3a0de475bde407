"""HttpBackend: the Trakerr wire request, URL configuration, and status handling."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from alertkit import Client, Delivered, Rejected, RetryLater
from alertkit.backends.base import ClientContext
from alertkit.backends.http import HttpBackend
from alertkit.model.errors import ConfigError
from alertkit.model.event import AppEvent, Envelope
from tests.standins.http import Reply, ScriptedServer

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "trakerr-appevent.schema.json"


def envelope(**fields) -> Envelope:
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type="t",
        event_message="m",
        log_level="error",
        event_time=1,
    )
    return Envelope(event=event, **fields)


def bound(url: str, **kwargs) -> HttpBackend:
    backend = HttpBackend(url, **kwargs)
    backend.bind(ClientContext(api_key="client-key", timeout=2))
    return backend


def test_request_is_the_trakerr_wire_format() -> None:
    with ScriptedServer() as server:
        backend = bound(f"{server.url}/api/v1/events")
        env = envelope()
        assert backend.send([env]) == [Delivered({"status": 200})]
        request = server.requests[0]
        assert request.path == "/api/v1/events"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["accept"] == "application/json"
        assert request.headers["idempotency-key"] == env.event_id
        assert "authorization" not in request.headers, "the key travels in the body only"
        body = request.json()
        assert body["apiKey"] == "client-key"
        assert "eventId" not in body and "event_id" not in body
        jsonschema.validate(body, json.loads(SCHEMA.read_text()))


def test_backend_api_key_overrides_the_clients() -> None:
    with ScriptedServer() as server:
        backend = bound(f"{server.url}/v1/events", api_key="own-key")
        backend.send([envelope()])
        assert server.requests[0].json()["apiKey"] == "own-key"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (201, Delivered),
        (400, Rejected),
        (408, RetryLater),
        (502, RetryLater),
    ],
)
def test_status_codes_beyond_the_contract(status: int, kind: type) -> None:
    """Statuses the contract suite does not try, and the Error body's message in a rejection."""
    with ScriptedServer([Reply(status, {"code": status, "message": "why"})]) as server:
        outcome = bound(f"{server.url}/v1/events").send([envelope()])[0]
        assert isinstance(outcome, kind)
        if kind is Rejected:
            assert "why" in outcome.reason


def test_retry_after_http_date_is_parsed() -> None:
    import time
    from email.utils import formatdate

    date = formatdate(time.time() + 30, usegmt=True)
    with ScriptedServer([Reply(503, headers={"Retry-After": date})]) as server:
        outcome = bound(f"{server.url}/v1/events").send([envelope()])[0]
        assert isinstance(outcome, RetryLater) and 25 <= outcome.delay <= 31


def test_url_form_options() -> None:
    backend = HttpBackend.from_url(
        "https://events.example/api/v1/events?api_key=abc123456&timeout=3&connections=2&min_level=warning&x=1".replace(
            "&x=1", ""
        )
    )
    assert backend.url == "https://events.example/api/v1/events"
    assert (backend.api_key, backend.timeout, backend.connections) == ("abc123456", 3.0, 2)
    assert backend.min_level == 30
    assert "abc123456" not in repr(backend)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("https://x/v1/events?colour=red", "unknown URL option"),
        ("https://x/v1/events?timeout=soon", "http"),
        ("https://x/v1/events?min_level=loud", "min_level"),
    ],
)
def test_bad_url_options_are_clear_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HttpBackend.from_url(url)


def test_no_api_key_anywhere_is_a_construction_error() -> None:
    with pytest.raises(ConfigError, match="api_key"):
        Client(backends=["https://x/v1/events"], register_atexit=False)


# -- breadcrumbs: no wire field, so the last free custom string slot ---------------------------------


def crumb(i: int) -> dict:
    return {
        "timestamp": None,
        "level": "info",
        "category": "app",
        "message": f"step {i}",
        "data": {},
    }


def test_breadcrumbs_travel_in_the_last_free_custom_string_slot() -> None:
    from alertkit import CustomData, CustomStringData

    with ScriptedServer([Reply(200, "{}")] * 3) as server:
        backend = bound(f"{server.url}/api/v1/events")
        crumbs = [crumb(i) for i in range(3)]
        taken = envelope(breadcrumbs=crumbs)
        taken.event.custom_properties = CustomData(
            string_data=CustomStringData(custom_data1="mine", custom_data10="also mine")
        )
        full = envelope(breadcrumbs=crumbs)
        full.event.custom_properties = CustomData(
            string_data=CustomStringData(**{f"custom_data{n}": "x" for n in range(1, 11)})
        )
        backend.send([envelope(breadcrumbs=crumbs), taken, full])
        bodies = [request.json() for request in server.requests]
    schema = json.loads(SCHEMA.read_text())
    for body in bodies:
        jsonschema.validate(body, schema)
    first = bodies[0]["customProperties"]["stringData"]
    assert list(first) == ["customData10"]
    assert [c["message"] for c in json.loads(first["customData10"])] == [
        "step 0",
        "step 1",
        "step 2",
    ]
    second = bodies[1]["customProperties"]["stringData"]
    assert second["customData1"] == "mine" and second["customData10"] == "also mine"
    assert json.loads(second["customData9"])[0]["message"] == "step 0"
    assert bodies[2]["customProperties"]["stringData"]["customData10"] == "x", "nothing overwritten"


def test_breadcrumb_text_keeps_the_newest_that_fit() -> None:
    from alertkit.backends.http import breadcrumb_text

    text = breadcrumb_text([crumb(i) for i in range(1000)], limit=1000)
    kept = json.loads(text)
    assert len(text) <= 1000 and kept[-1]["message"] == "step 999"
    assert [c["message"] for c in kept] == [f"step {i}" for i in range(1000 - len(kept), 1000)]
    assert breadcrumb_text([], limit=10) == "[]"
