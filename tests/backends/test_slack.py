"""SlackBackend against a scripted stand-in of Slack's incoming webhooks."""

from __future__ import annotations

import logging

import pytest

from alertkit import ConfigError, Delivered, Dropped, Rejected, Skipped
from alertkit.backends import SlackBackend, create_backend
from tests.backends._notifiers import client_factory, declined, leaked, warning
from tests.standins.http import Reply, ScriptedServer

TOKEN = "xoxSECRETtoken42"
PATH = f"/services/T0001/B0002/{TOKEN}"


@pytest.fixture
def make_client():
    with client_factory() as make:
        yield make


@pytest.fixture
def slack():
    with ScriptedServer([Reply(200, "ok", {"Content-Type": "text/plain"})]) as server:
        yield server


def url(server: ScriptedServer, path: str = PATH, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": server.url, **options}.items())
    return f"slack://hooks.slack.com{path}?{query}"


def test_posts_block_kit_with_text_fallback_to_the_webhook_path(slack, make_client):
    client = make_client([url(slack)])
    results = client.send_event(
        declined(
            client,
            details={"order": 42},
            links=[{"href": "https://ops.example/r", "text": "Runbook"}],
        ),
        timeout=10,
    )
    assert results["slack"] == Delivered({"status": 200, "response": "ok"})
    [request] = slack.requests
    assert request.path == PATH
    assert request.headers["content-type"].startswith("application/json")
    body = request.json()
    title = "[ERROR] PaymentDeclined: card refused — checkout (production)"
    assert body["text"].startswith(title)
    blocks = body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": title, "emoji": False},
    }
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in blocks[2]["fields"]}
    assert fields["*Stage*"] == "production"
    assert fields["*App version*"] == "2.4.1"
    assert fields["*Event type*"].endswith("PaymentDeclined")
    texts = "\n".join(b.get("text", {}).get("text", "") for b in blocks)
    assert "in _charge" in texts  # the innermost frame of the trace
    assert "*order*: 42" in texts
    assert blocks[-1]["elements"][0]["text"] == "<https://ops.example/r|Runbook>"


def test_message_text_is_escaped_for_mrkdwn(slack, make_client):
    client = make_client([url(slack)])
    event = client.create_new_app_event("error", event_type="x", event_message="a <b> & <!here>")
    client.send_event(event, timeout=10)
    body = slack.requests[0].json()
    assert body["blocks"][1]["text"]["text"] == "a &lt;b&gt; &amp; &lt;!here&gt;"
    assert "<!here>" not in body["text"]


def test_429_is_retried_after_the_servers_delay(slack, make_client):
    slack.set_script([Reply(429, "rate_limited", {"Retry-After": "0"}), Reply(200, "ok")])
    client = make_client([url(slack)])
    results = client.send_event(declined(client), timeout=10)
    assert isinstance(results["slack"], Delivered)
    assert len(slack.requests) == 2
    assert client.stats()["slack"]["retried"] == 1


def test_4xx_is_rejected_with_slacks_reason_and_not_retried(slack, make_client):
    slack.set_script([Reply(404, "no_service")])
    client = make_client([url(slack)])
    results = client.send_event(declined(client), timeout=10)
    assert results["slack"] == Rejected(f"HTTP 404 from 127.0.0.1:{slack.port}: no_service")
    assert len(slack.requests) == 1


def test_webhook_path_never_in_repr_reasons_or_logs(slack, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    # A server that quotes the request path back, as a proxy error page might.
    slack.set_script(lambda request: Reply(400, f"invalid_token for {request.path}"))
    client = make_client([url(slack)])
    backend = client.backends[0]
    results = client.send_event(declined(client), timeout=10)
    assert isinstance(results["slack"], Rejected)
    assert TOKEN not in results["slack"].reason
    assert "****" in results["slack"].reason
    assert TOKEN not in repr(backend) and TOKEN not in repr(client)
    assert TOKEN not in str(client.stats())
    assert any("rejected" in r.getMessage() for r in caplog.records)
    assert leaked(caplog, TOKEN) == []


def test_min_level_routes_warnings_and_errors_to_different_channels(slack, make_client):
    client = make_client(
        [
            url(slack, "/services/T/B/warnings", name="ops-warnings", min_level="warning"),
            url(slack, "/services/T/B/errors", name="ops-errors", min_level="error"),
        ]
    )
    assert [b.min_level for b in client.backends] == [30, 40]
    results = client.send_event(warning(client), timeout=10)
    assert isinstance(results["ops-warnings"], Delivered)
    assert isinstance(results["ops-errors"], Skipped)
    assert [r.path for r in slack.requests] == ["/services/T/B/warnings"]
    results = client.send_event(declined(client), timeout=10)
    assert isinstance(results["ops-warnings"], Delivered)
    assert isinstance(results["ops-errors"], Delivered)
    assert sorted(r.path for r in slack.requests[1:]) == [
        "/services/T/B/errors",
        "/services/T/B/warnings",
    ]


def test_min_level_keyword():
    backend = SlackBackend("https://hooks.slack.com/services/T/B/X", min_level="error")
    assert backend.min_level == 40


def test_one_failing_notifier_does_not_stop_the_others(slack, make_client):
    import alertkit

    with ScriptedServer([Reply(500, "rollup_error")]) as broken:
        client = make_client(
            [url(broken, name="broken"), url(slack, name="working")],
            retry=alertkit.RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.02),
        )
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["working"], Delivered)
        assert isinstance(results["broken"], Dropped)
        assert len(broken.requests) == 2
        assert len(slack.requests) == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("slack://hooks.slack.com/services/T1/B2/X3", "https://hooks.slack.com/services/T1/B2/X3"),
        ("slack://T1/B2/X3", "https://hooks.slack.com/services/T1/B2/X3"),
        (
            "slack://hooks.slack.com/services/T1/B2/X3?endpoint=http://127.0.0.1:9",
            "http://127.0.0.1:9/services/T1/B2/X3",
        ),
    ],
)
def test_url_forms(spec, expected):
    assert create_backend(spec).webhook_url == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("slack://hooks.slack.com", "webhook path"),
        ("slack://hooks.slack.com/services/T/B/X?channel=x", "unknown URL option"),
        ("slack://hooks.slack.com/services/T/B/X?min_level=loud", "min_level"),
        ("slack://hooks.slack.com/services/T/B/X?timeout=soon", "slack"),
    ],
)
def test_bad_urls_are_rejected_at_construction(spec, message):
    with pytest.raises(ConfigError, match=message):
        create_backend(spec)


def test_bad_webhook_url_keyword():
    with pytest.raises(ConfigError, match="webhook_url"):
        SlackBackend("hooks.slack.com/services/T/B/X")


def test_message_shows_the_last_few_breadcrumbs_and_the_fingerprint(slack, make_client):
    crumbs = [
        {
            "timestamp": f"2026-12-06T10:00:0{i}.000+00:00",
            "level": "info",
            "category": "app.cart",
            "message": f"step {i}",
            "data": {},
        }
        for i in range(8)
    ]
    client = make_client([url(slack)])
    envelope = declined(client, breadcrumbs=crumbs, fingerprint=["payments", "acme"])
    assert isinstance(client.send_event(envelope, timeout=10)["slack"], Delivered)
    body = slack.requests[0].json()
    texts = "\n".join(b.get("text", {}).get("text", "") for b in body["blocks"])
    assert "*Breadcrumbs (last 5 of 8)*" in texts
    assert "10:00:07 info app.cart: step 7" in texts and "step 2" not in texts
    assert "Breadcrumbs (last 5 of 8):\n  10:00:03 info app.cart: step 3" in body["text"]
    fields = "\n".join(f["text"] for b in body["blocks"] for f in b.get("fields", []))
    assert "*Fingerprint*\npayments / acme" in fields
