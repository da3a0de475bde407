"""WhatsAppBackend against a scripted stand-in of the Cloud API's messages endpoint."""

from __future__ import annotations

import logging

import pytest

import alertkit
from alertkit import ConfigError, Delivered, Dropped, Rejected, RetryLater
from alertkit.backends import WhatsAppBackend, create_backend
from tests.backends._notifiers import client_factory, declined, leaked
from tests.standins.http import Reply, ScriptedServer

TOKEN = "EAAGsecretACCESStoken123"
PHONE_ID = "106540352242922"
OK = Reply(
    200,
    {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+15551234567", "wa_id": "15551234567"}],
        "messages": [{"id": "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1", "message_status": "accepted"}],
    },
)


def graph_error(code: int, message: str, details: str | None = None) -> dict:
    error = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AazvOQCCtSzVNT7PPh3ZqVd",
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


@pytest.fixture
def make_client():
    with client_factory() as make:
        yield make


@pytest.fixture
def graph():
    with ScriptedServer([OK]) as server:
        yield server


def url(server: ScriptedServer, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": server.url, **options}.items())
    return f"whatsapp://{TOKEN}@{PHONE_ID}/%2B15551234567?{query}"


def test_template_message_request_shape(graph, make_client):
    client = make_client([url(graph, details_url="https://ops.example/alerts/{alert_id}")])
    envelope = declined(client)
    results = client.send_event(envelope, timeout=10)
    assert results["whatsapp"] == Delivered(
        {"status": 200, "message_id": "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1"}
    )
    [request] = graph.requests
    assert request.path == f"/v23.0/{PHONE_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert {k: v for k, v in body.items() if k != "template"} == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15551234567",
        "type": "template",
    }
    template = body["template"]
    assert template["name"] == "alertkit_alert"
    assert template["language"] == {"code": "en_US"}
    [component] = template["components"]
    assert component["type"] == "body"
    params = {p["parameter_name"]: p["text"] for p in component["parameters"]}
    assert all(p["type"] == "text" for p in component["parameters"])
    assert params["name"] == "[ERROR] PaymentDeclined — checkout (production)"
    assert params["message"] == "card refused"
    assert params["date"].endswith(" UTC")
    assert params["data"] == f"https://ops.example/alerts/{envelope.event_id}"


def test_data_uses_the_request_logs_alert_id(graph, make_client):
    client = make_client([url(graph, details_url="https://ops.example/alerts")])
    envelope = declined(client, request_log={"alert_id": "a1b2c3", "api_logs": {}})
    client.send_event(envelope, timeout=10)
    params = graph.requests[0].json()["template"]["components"][0]["parameters"]
    data = next(p["text"] for p in params if p["parameter_name"] == "data")
    assert data == "https://ops.example/alerts (alert a1b2c3)"


def test_parameters_hold_no_newlines_tabs_or_space_runs(graph, make_client):
    client = make_client([url(graph, template="ops_alert", language="de")])
    event = client.create_new_app_event(
        "error", event_type="x", event_message="line one\n\tline     two"
    )
    client.send_event(event, timeout=10)
    template = graph.requests[0].json()["template"]
    assert template["name"] == "ops_alert" and template["language"] == {"code": "de"}
    for param in template["components"][0]["parameters"]:
        assert "\n" not in param["text"] and "\t" not in param["text"]
        assert "     " not in param["text"]
        assert param["text"]  # the Cloud API refuses empty parameters
    assert template["components"][0]["parameters"][2]["text"] == "line one line two"


def test_429_then_success_is_delivered(graph, make_client):
    graph.set_script(
        [
            Reply(
                429, graph_error(4, "(#4) Application request limit reached"), {"Retry-After": "0"}
            ),
            OK,
        ]
    )
    client = make_client([url(graph)])
    results = client.send_event(declined(client), timeout=10)
    assert isinstance(results["whatsapp"], Delivered)
    assert len(graph.requests) == 2


@pytest.mark.parametrize("code", [130429, 131056, 80007])
def test_rate_limit_codes_in_a_400_are_retried(graph, code):
    graph.set_script([Reply(400, graph_error(code, "Rate limit hit", "too many messages"))])
    backend = create_backend(url(graph))
    with client_factory() as make:
        [outcome] = backend.send([declined(make([backend]))])
    assert outcome == RetryLater(f"HTTP 400 (#{code}) Rate limit hit: too many messages", None)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 132001, "(#132001) Template name does not exist in the translation"),
        (401, 190, "Error validating access token: Session has expired"),
        (400, 131026, "Message undeliverable"),
    ],
)
def test_permanent_errors_rejected_with_the_graph_message(
    graph, make_client, status, code, message
):
    graph.set_script([Reply(status, graph_error(code, message))])
    client = make_client([url(graph)])
    results = client.send_event(declined(client), timeout=10)
    assert results["whatsapp"] == Rejected(f"HTTP {status} (#{code}) {message}")
    assert len(graph.requests) == 1


def test_token_never_in_repr_reasons_or_logs(graph, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    graph.set_script(
        lambda request: Reply(
            401,
            graph_error(
                190, f"Invalid OAuth access token - Cannot parse {request.headers['authorization']}"
            ),
        )
    )
    client = make_client([url(graph)])
    results = client.send_event(declined(client), timeout=10)
    reason = results["whatsapp"].reason
    assert "Cannot parse Bearer ****" in reason
    for text in (reason, repr(client.backends[0]), repr(client), str(client.stats())):
        assert TOKEN not in text
    assert leaked(caplog, TOKEN) == []


def test_one_failing_notifier_does_not_stop_the_others(graph, make_client):
    with ScriptedServer([Reply(503, graph_error(133004, "Server temporarily unavailable"))]) as bad:
        client = make_client(
            [url(bad, name="broken"), url(graph, name="working")],
            retry=alertkit.RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.02),
        )
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["working"], Delivered)
        assert isinstance(results["broken"], Dropped)
        assert len(bad.requests) == 2


def test_keyword_construction_and_url_options():
    backend = WhatsAppBackend(
        f"https://graph.facebook.com/v21.0/{PHONE_ID}/messages",
        TOKEN,
        "+4915112345678",
        min_level="error",
    )
    assert backend.to == "4915112345678" and backend.min_level == 40
    built = create_backend(
        f"whatsapp://{TOKEN}@{PHONE_ID}/15551234567?version=v21.0&min_level=warning"
    )
    assert built.api_url == f"https://graph.facebook.com/v21.0/{PHONE_ID}/messages"
    assert built.min_level == 30


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"whatsapp://{PHONE_ID}/15551234567", "token"),
        (f"whatsapp://{TOKEN}@{PHONE_ID}", "whatsapp://<token>"),
        (f"whatsapp://{TOKEN}@{PHONE_ID}/not-a-number", "international form"),
        (f"whatsapp://{TOKEN}@{PHONE_ID}/15551234567?lang=de", "unknown URL option"),
    ],
)
def test_bad_config_rejected_at_construction(spec, message):
    with pytest.raises(ConfigError, match=message):
        create_backend(spec)
