"""TelegramBackend against a scripted stand-in of the Bot API's sendMessage."""

from __future__ import annotations

import logging

import pytest

import alertkit
from alertkit import ConfigError, Delivered, Dropped, Rejected, RetryLater
from alertkit.backends import TelegramBackend, create_backend
from alertkit.backends._message import utf16_len
from alertkit.backends.telegram import CUT_MARKER, MAX_TEXT, cut_message
from tests.backends._notifiers import client_factory, declined, leaked
from tests.standins.http import Reply, ScriptedServer

TOKEN = "123456789:AAHsecretTOKENvalue"
CHAT = "-1001234567890"
OK = Reply(200, {"ok": True, "result": {"message_id": 77, "chat": {"id": -1001234567890}}})


@pytest.fixture
def make_client():
    with client_factory() as make:
        yield make


@pytest.fixture
def bot_api():
    with ScriptedServer([OK]) as server:
        yield server


def url(server: ScriptedServer, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": server.url, **options}.items())
    return f"tgram://{TOKEN}/{CHAT}?{query}"


def test_send_message_request_shape(bot_api, make_client):
    client = make_client([url(bot_api)])
    results = client.send_event(declined(client, details={"order": 42}), timeout=10)
    assert results["tgram"] == Delivered({"status": 200, "message_id": 77})
    [request] = bot_api.requests
    assert request.method == "POST"
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.headers["content-type"].startswith("application/json")
    body = request.json()
    assert set(body) == {"chat_id", "text"}  # plain text: no parse_mode to escape for
    assert body["chat_id"] == CHAT
    text = body["text"]
    assert text.startswith("[ERROR] PaymentDeclined: card refused — checkout (production)\n")
    assert "Stage: production" in text
    assert "in _charge" in text
    assert "order: 42" in text


def test_silent_option_disables_the_notification(bot_api, make_client):
    client = make_client([url(bot_api, silent="yes")])
    client.send_event(declined(client), timeout=10)
    assert bot_api.requests[0].json()["disable_notification"] is True


def test_long_messages_are_cut_to_4096_characters_with_a_marker(bot_api, make_client):
    client = make_client([url(bot_api)])
    event = client.create_new_app_event("error", event_type="big", event_message="x" * 2900)
    client.send_event(
        client.envelope_for(
            event, details={"dump": "y" * 290} | {f"k{i}": "z" * 290 for i in range(19)}
        ),
        timeout=10,
    )
    text = bot_api.requests[0].json()["text"]
    assert utf16_len(text) == MAX_TEXT
    assert text.endswith(CUT_MARKER)


def test_cut_counts_utf16_units_like_telegram():
    emoji = "\U0001f525"  # two UTF-16 units
    text = emoji * 3000  # 6000 units, 3000 code points
    cut = cut_message(text)
    assert utf16_len(cut) <= MAX_TEXT
    assert cut.endswith(CUT_MARKER)
    assert cut_message("short") == "short"
    assert cut_message("a" * MAX_TEXT) == "a" * MAX_TEXT


def test_429_honours_parameters_retry_after(bot_api):
    bot_api.set_script(
        [
            Reply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 34",
                    "parameters": {"retry_after": 34},
                },
            )
        ]
    )
    backend = create_backend(url(bot_api))
    with client_factory() as make:
        [outcome] = backend.send([declined(make([backend]))])
    assert outcome == RetryLater(
        f"HTTP 429 from 127.0.0.1:{bot_api.port}: Too Many Requests: retry after 34", 34.0
    )


def test_429_then_success_is_delivered(bot_api, make_client):
    bot_api.set_script(
        [
            Reply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 0",
                    "parameters": {"retry_after": 0},
                },
            ),
            OK,
        ]
    )
    client = make_client([url(bot_api)])
    results = client.send_event(declined(client), timeout=10)
    assert isinstance(results["tgram"], Delivered)
    assert len(bot_api.requests) == 2
    assert client.stats()["tgram"]["retried"] == 1


@pytest.mark.parametrize(
    ("status", "description"),
    [
        (400, "Bad Request: chat not found"),
        (403, "Forbidden: bot was blocked by the user"),
        (401, "Unauthorized"),
    ],
)
def test_4xx_rejected_with_the_description(bot_api, make_client, status, description):
    bot_api.set_script(
        [Reply(status, {"ok": False, "error_code": status, "description": description})]
    )
    client = make_client([url(bot_api)])
    results = client.send_event(declined(client), timeout=10)
    assert results["tgram"] == Rejected(
        f"HTTP {status} from 127.0.0.1:{bot_api.port}: {description}"
    )
    assert len(bot_api.requests) == 1


def test_migrated_group_says_which_chat_to_use(bot_api):
    bot_api.set_script(
        [
            Reply(
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": -1009876},
                },
            )
        ]
    )
    backend = create_backend(url(bot_api))
    with client_factory() as make:
        [outcome] = backend.send([declined(make([backend]))])
    assert isinstance(outcome, Rejected)
    assert "-1009876" in outcome.reason


def test_token_never_in_repr_reasons_or_logs(bot_api, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    bot_api.set_script(
        lambda request: Reply(
            404, {"ok": False, "error_code": 404, "description": f"Not Found: {request.path}"}
        )
    )
    client = make_client([url(bot_api)])
    results = client.send_event(declined(client), timeout=10)
    reason = results["tgram"].reason
    assert reason.startswith(
        f"HTTP 404 from 127.0.0.1:{bot_api.port}: Not Found: /bot****/sendMessage"
    )
    for text in (reason, repr(client.backends[0]), repr(client), str(client.stats())):
        assert TOKEN not in text
    assert any("sendMessage" in r.getMessage() for r in caplog.records)  # urllib3's request line
    assert leaked(caplog, TOKEN) == []


def test_one_failing_notifier_does_not_stop_the_others(bot_api, make_client):
    with ScriptedServer([Reply(502, "bad gateway")]) as broken:
        client = make_client(
            [url(broken, name="broken"), url(bot_api, name="working")],
            retry=alertkit.RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.02),
        )
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["working"], Delivered)
        assert isinstance(results["broken"], Dropped)
        assert len(broken.requests) == 2


def test_keyword_construction_and_min_level():
    backend = TelegramBackend(TOKEN, -100123, min_level="error")
    assert backend.api_url == "https://api.telegram.org"
    assert backend.min_level == 40
    assert create_backend(f"tgram://{TOKEN}/{CHAT}?min_level=warning").min_level == 30


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"tgram://{TOKEN}", "one chat"),
        (f"tgram://{TOKEN}/1/2", "one chat"),
        ("tgram://notatoken/1", "bot_token"),
        (f"tgram://{TOKEN}/1?parse_mode=HTML", "unknown URL option"),
        (f"tgram://{TOKEN}/1?endpoint=ftp://x", "api_url"),
    ],
)
def test_bad_config_rejected_at_construction(spec, message):
    with pytest.raises(ConfigError, match=message):
        create_backend(spec)
