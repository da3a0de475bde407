"""No secret in any log line, ``repr()``, stats reason or delivered body, through every backend.

Each backend gets the same three events full of secrets (a logged error with ``extra`` fields and
an exception, a ``Client.log`` dict, an event with custom data and a URL), with logging captured
at DEBUG everywhere. The backend's own credentials are secrets too: a second instance of each
talks to a stand-in that echoes the request back in its error reply (a service quoting what it
was sent), a third to a closed port, so the error paths are scanned as well.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import ssl
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import alertkit
from alertkit import AlertHandler, Client
from alertkit.backends import (
    EmailBackend,
    HttpBackend,
    LocalBackend,
    PagerDutyBackend,
    RedisBackend,
    SlackBackend,
    TelegramBackend,
    create_backend,
    registry,
)
from alertkit.backends.base import Backend
from alertkit.backends.redis import LOGS_QUEUE
from alertkit.model.event import CustomData, CustomStringData
from alertkit.policy.scrub import default_processors
from tests.standins import redis as redis_servers
from tests.standins.http import Reply, Request, ScriptedServer, free_port
from tests.standins.smtp import SMTPServer

redis_server_own = redis_servers.redis_server_own

# -- secrets in the events (scrubbed before any backend sees them) --------------------------------
PASSWORD = "pwExtraField-7Q3"
API_KEY = "skLiveScanSecretKey31"
URL_TOKEN = "tokInUrl-88Zx"
URL_PASSWORD = "UrlPassw0rd-K9"
MSG_PASSWORD = "pwInMessage-41Lp"
BEARER = "eyJhbGciOiJIUzI1NiJ9.c2Nhbg.sig-0042"
COOKIE_VALUE = "cookieValue-55Rt"
CARD = "4111 1111 1111 1111"
EVENT_SECRETS = [
    PASSWORD,
    API_KEY,
    URL_TOKEN,
    URL_PASSWORD,
    MSG_PASSWORD,
    BEARER,
    COOKIE_VALUE,
    CARD,
    CARD.replace(" ", ""),
]

# -- the backends' own credentials (masked in repr, logs and reasons) ------------------------------
HTTP_KEY = "httpApiKeySecret0001"
PD_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
SLACK_TOKEN = "xoxSlackWebhookSecret77"
TG_TOKEN = "123456789:AAHscanSecretTelegramToken"
WA_TOKEN = "EAAGscanSecretWhatsappToken9"
SMTP_USER = "alerts@example.com"
SMTP_PASSWORD = "smtpPassw0rdSecret"
REDIS_PASSWORD = "redisPassw0rdSecret"
WRONG_PASSWORD = "wrongPassw0rdSecret"

APP_LOGGER = "tests.secret_scan.app"
#: Loggers of the stand-ins (not alertkit, not its libraries): the SMTP server logs what it gets.
STAND_IN_LOGGERS = (APP_LOGGER, "mail.log")
# Two quick attempts and no circuit breaker: the failing backends settle at once.
FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05, max_attempts=2, circuit_threshold=0)


def test_every_built_in_backend_is_scanned_here():
    scanned = {"http", "https", "local", "pagerduty", "slack", "tgram", "whatsapp", "smtp"}
    scanned |= {"smtps", "redis", "rediss", "redis-stream", "rediss-stream"}
    assert set(registry._BUILTIN) <= scanned, f"add a scan for {set(registry._BUILTIN) - scanned}"


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("alertkit", "urllib3", "redis", "smtplib"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(backends: list[Any]) -> Client:
        client = Client(
            backends=backends,
            processors=default_processors(),
            retry=FAST,
            storm_window=0,
            app_name="checkout",
            sample_system=False,
            register_atexit=False,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(2.0)


def send_secret_events(client: Client) -> None:
    """Three events carrying every kind of secret the scrubber knows, then wait for them."""
    logger = logging.getLogger(APP_LOGGER)
    handler = AlertHandler(client=client, level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        try:
            raise ConnectionError(f"cannot reach https://bob:{URL_PASSWORD}@db.example/x")
        except ConnectionError:
            logger.error(
                "charge failed: Authorization: Bearer %s password=%s card %s",
                BEARER,
                MSG_PASSWORD,
                CARD,
                extra={
                    "password": PASSWORD,
                    "request": {
                        "headers": {"Cookie": f"sessionid={COOKIE_VALUE}"},
                        "url": f"https://shop.example/cb?token={URL_TOKEN}&page=2",
                    },
                    "links": [{"href": f"https://shop.example/o?token={URL_TOKEN}", "text": "o"}],
                },
                exc_info=True,
            )
    finally:
        logger.removeHandler(handler)
    client.log(
        {
            "eventtype": "LoginFailed",
            "eventmessage": f"login failed password={MSG_PASSWORD}",
            "url": f"https://shop.example/login?api_key={API_KEY}&next=/",
            "api_key": API_KEY,
            "user_data": {"credentials": {"user": "jill", "secret": PASSWORD}},
        },
        "error",
        exc_info=False,
    )
    event = client.create_new_app_event(
        "error", event_type="PaymentDeclined", event_message=f"card {CARD} declined"
    )
    event.custom_properties = CustomData(
        string_data=CustomStringData(
            custom_data1=f"Bearer {BEARER}", custom_data2=f"https://u:{URL_PASSWORD}@h/"
        )
    )
    event.context_url = f"https://shop.example/pay?session={URL_TOKEN}"
    client.send_event_async(event)
    assert client.flush(20.0)


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = []
    for record in caplog.records:
        if record.name.startswith(STAND_IN_LOGGERS):
            continue
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        texts.append(text + (record.stack_info or ""))
    return texts


def scan(
    caplog: pytest.LogCaptureFixture,
    client: Client,
    credentials: list[str],
    bodies: list[str],
) -> None:
    """Assert that no secret is anywhere we can look, and that the bodies did arrive."""
    assert len(bodies) >= 3, bodies
    texts = log_texts(caplog)
    assert logging.getLogger("alertkit.worker").isEnabledFor(logging.DEBUG)
    texts += [repr(backend) for backend in client.backends]
    texts += [backend.describe() for backend in client.backends]  # type: ignore[attr-defined]
    texts += [repr(client), json.dumps(client.stats(), default=str)]
    for secret in EVENT_SECRETS + credentials:
        leaks = [text[:300] for text in texts if secret in text]
        assert not leaks, f"{secret!r} leaked: {leaks}"
    for secret in EVENT_SECRETS:
        leaks = [body[:300] for body in bodies if secret in body]
        assert not leaks, f"{secret!r} was delivered: {leaks}"


def echo(request: Request) -> Reply:
    """A service that quotes the whole request back in its error (the worst case for reasons)."""
    quoted = f"bad request {request.path} {request.body.decode('utf-8', 'replace')}"
    return Reply(400, {"ok": False, "error": quoted, "message": quoted, "description": quoted})


def closed_port() -> str:
    return f"http://127.0.0.1:{free_port()}"


def http_bodies(server: ScriptedServer) -> list[str]:
    return [request.body.decode("utf-8", "replace") for request in server.requests]


def check_failures_were_counted(client: Client, names: list[str]) -> None:
    stats = client.stats()
    for name in names:
        assert stats[name]["delivered"] == 0, stats[name]
        assert stats[name]["rejected"] + stats[name]["dropped"] >= 1, stats[name]


# -- the backends ----------------------------------------------------------------------------------


def test_http(debug_logs, make_client):
    with ScriptedServer([Reply(200, {"ok": True})]) as good, ScriptedServer(echo) as bad:
        backends: list[Backend] = [
            create_backend(f"{good.url}/v1/events?api_key={HTTP_KEY}"),
            HttpBackend(f"{bad.url}/v1/events", api_key=HTTP_KEY, name="http-echo"),
            HttpBackend(f"{closed_port()}/v1/events", api_key=HTTP_KEY, name="http-closed"),
        ]
        client = make_client(backends)
        send_secret_events(client)
        check_failures_were_counted(client, ["http-echo", "http-closed"])
        scan(debug_logs, client, [HTTP_KEY], http_bodies(good))


def test_local(debug_logs, make_client, tmp_path):
    path = tmp_path / "inbox.db"
    client = make_client([LocalBackend(path)])
    send_secret_events(client)
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT json, coalesce(details, '') FROM events").fetchall()
    scan(debug_logs, client, [], [json_text + details for json_text, details in rows])


def test_pagerduty(debug_logs, make_client):
    accepted = Reply(202, {"status": "success", "message": "Event processed", "dedup_key": "k"})
    with ScriptedServer([accepted]) as good, ScriptedServer(echo) as bad:
        backends = [
            PagerDutyBackend(PD_KEY, endpoint=f"{good.url}/v2/enqueue"),
            PagerDutyBackend(PD_KEY, endpoint=f"{bad.url}/v2/enqueue", name="pd-echo"),
            PagerDutyBackend(PD_KEY, endpoint=f"{closed_port()}/v2/enqueue", name="pd-closed"),
        ]
        client = make_client(backends)
        send_secret_events(client)
        check_failures_were_counted(client, ["pd-echo", "pd-closed"])
        scan(debug_logs, client, [PD_KEY], http_bodies(good))


def test_slack(debug_logs, make_client):
    path = f"/services/T0001/B0002/{SLACK_TOKEN}"
    with ScriptedServer([Reply(200, "ok")]) as good, ScriptedServer(echo) as bad:
        backends = [
            create_backend(f"slack://hooks.slack.com{path}?endpoint={good.url}"),
            SlackBackend(f"{bad.url}{path}", name="slack-echo"),
            SlackBackend(f"{closed_port()}{path}", name="slack-closed"),
        ]
        client = make_client(backends)
        send_secret_events(client)
        check_failures_were_counted(client, ["slack-echo", "slack-closed"])
        scan(debug_logs, client, [SLACK_TOKEN], http_bodies(good))


def test_telegram(debug_logs, make_client):
    sent = Reply(200, {"ok": True, "result": {"message_id": 1}})
    with ScriptedServer([sent]) as good, ScriptedServer(echo) as bad:
        backends = [
            create_backend(f"tgram://{TG_TOKEN}/-1001234567890?endpoint={good.url}"),
            TelegramBackend(TG_TOKEN, -1001234567890, api_url=bad.url, name="tgram-echo"),
            TelegramBackend(TG_TOKEN, -1001234567890, api_url=closed_port(), name="tgram-closed"),
        ]
        client = make_client(backends)
        send_secret_events(client)
        check_failures_were_counted(client, ["tgram-echo", "tgram-closed"])
        scan(debug_logs, client, [TG_TOKEN], http_bodies(good))


def test_whatsapp(debug_logs, make_client):
    sent = Reply(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.1"}]})
    phone = "106540352242922"
    with ScriptedServer([sent]) as good, ScriptedServer(echo) as bad:

        def make(base: str, name: str) -> Backend:
            return create_backend(
                f"whatsapp://{WA_TOKEN}@{phone}/%2B15551234567?endpoint={base}&name={name}"
            )

        client = make_client(
            [make(good.url, "whatsapp"), make(bad.url, "wa-echo"), make(closed_port(), "wa-closed")]
        )
        send_secret_events(client)
        check_failures_were_counted(client, ["wa-echo", "wa-closed"])
        scan(debug_logs, client, [WA_TOKEN], http_bodies(good))


def test_email(debug_logs, make_client, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with SMTPServer(tls=context, credentials=(SMTP_USER, SMTP_PASSWORD)) as smtp:

        def make(password: str, port: int, name: str) -> Backend:
            return EmailBackend(
                "127.0.0.1",
                port,
                SMTP_USER,
                password,
                ["oncall@example.com"],
                ca_file=str(ca_file),
                timeout=5,
                name=name,
            )

        url = (
            f"smtp://alerts%40example.com:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
            f"?to=oncall@example.com&ca_file={ca_file}"
        )
        client = make_client(
            [
                create_backend(url),
                make(WRONG_PASSWORD, smtp.port, "email-wrong-password"),
                make(SMTP_PASSWORD, free_port(), "email-closed"),
            ]
        )
        send_secret_events(client)
        check_failures_were_counted(client, ["email-wrong-password", "email-closed"])
        bodies = [decoded(received.message) for received in smtp.messages]
        scan(debug_logs, client, [SMTP_PASSWORD, WRONG_PASSWORD], bodies)


def decoded(message: Any) -> str:
    """Headers and every text part, decoded (quoted-printable would split a secret in two)."""
    parts = [str(value) for value in message.values()]
    parts += [
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    ]
    return "\n".join(parts)


def test_redis(debug_logs, make_client, redis_server_own):
    with redis_server_own.client() as admin:
        admin.config_set("requirepass", REDIS_PASSWORD)
    port = redis_server_own.port
    backends = [
        create_backend(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"),
        RedisBackend(f"redis://:{WRONG_PASSWORD}@127.0.0.1:{port}/0", name="redis-wrong"),
        RedisBackend(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0", name="redis-closed"),
    ]
    client = make_client(backends)
    send_secret_events(client)
    check_failures_were_counted(client, ["redis-wrong", "redis-closed"])
    import redis

    with redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD) as conn:
        values = conn.hgetall(f"{LOGS_QUEUE}.values")
    bodies = [value.decode("utf-8", "replace") for value in values.values()]
    scan(debug_logs, client, [REDIS_PASSWORD, WRONG_PASSWORD], bodies)


def test_redis_stream(debug_logs, make_client, redis_server_own):
    """The whole envelope goes into the stream: scrubbed before it, the password masked."""
    with redis_server_own.client() as admin:
        admin.config_set("requirepass", REDIS_PASSWORD)
    port = redis_server_own.port
    base = "redis-stream://:{}@127.0.0.1:{}/0?stream=scan&name={}"
    backends = [
        create_backend(base.format(REDIS_PASSWORD, port, "redis-stream")),
        create_backend(base.format(WRONG_PASSWORD, port, "stream-wrong")),
        create_backend(base.format(REDIS_PASSWORD, free_port(), "stream-closed")),
    ]
    client = make_client(backends)
    send_secret_events(client)
    check_failures_were_counted(client, ["stream-wrong", "stream-closed"])
    import redis

    with redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD) as conn:
        entries = conn.xrange("{scan}")
    assert entries
    bodies = [fields[b"envelope"].decode("utf-8", "replace") for _, fields in entries]
    scan(debug_logs, client, [REDIS_PASSWORD, WRONG_PASSWORD], bodies)


# -- configuration errors ------------------------------------------------------------------------

CONFIG_SECRET = "cfgSecretPw0rd"
_HALF = (CONFIG_SECRET[:7], CONFIG_SECRET[7:])  # a password with a "/" in it is split in two
_PD = "a" * 32


def _wa(api_url: str, token: str, to: str) -> Backend:
    from alertkit.backends.whatsapp import WhatsAppBackend

    return WhatsAppBackend(api_url, token, to)


S = CONFIG_SECRET
BAD_CONFIGS: dict[str, Callable[[], object]] = {
    "redis port": lambda: RedisBackend(f"redis://:{S}@127.0.0.1:notaport/0"),
    "redis database": lambda: RedisBackend(f"redis://:{S}@127.0.0.1:6379/abc"),
    "redis without @": lambda: RedisBackend(f"redis://user:{S}/0"),
    "redis password with a slash": lambda: RedisBackend(f"redis://:{_HALF[0]}/{_HALF[1]}@h:1/0"),
    "redis scheme": lambda: RedisBackend(f"http://:{S}@host/0"),
    "redis ipv6": lambda: RedisBackend(f"redis://:{S}@[::1/0"),
    "redis options": lambda: RedisBackend(f"redis://:{S}@h/0?password={S}"),
    "redis url port": lambda: create_backend(f"redis://:{S}@127.0.0.1:notaport/0"),
    "redis url database": lambda: create_backend(f"redis://:{S}@127.0.0.1:6379/abc"),
    "redis url ipv6": lambda: create_backend(f"redis://:{S}@[::1/0"),
    "redis-stream port": lambda: create_backend(f"redis-stream://:{S}@127.0.0.1:notaport/0"),
    "redis-stream maxlen": lambda: create_backend(f"redis-stream://:{S}@h:1/0?maxlen=lots"),
    "redis-stream scheme": lambda: create_backend(f"rediss-stream://:{S}@[::1/0"),
    "smtp port": lambda: create_backend(f"smtp://a%40b.com:{S}@mail:notaport?to=x@y.com"),
    "smtp password with a slash": lambda: create_backend(
        f"smtp://a%40b.com:{_HALF[0]}/{_HALF[1]}@mail:587?to=x@y.com"
    ),
    "smtp timeout": lambda: create_backend(f"smtp://a%40b.com:{S}@mail:587?to=x@y&timeout=abc"),
    "smtp password as the port": lambda: EmailBackend("mail", S, "a@b.com", S, ["x@y.com"]),
    "smtp password as recipients": lambda: EmailBackend("mail", 587, "a@b.com", "pw", [S]),
    "http scheme": lambda: HttpBackend(f"ftp://u:{S}@h/x", api_key="k"),
    "http without scheme": lambda: HttpBackend(f"127.0.0.1/v1?api_key={S}"),
    "http timeout": lambda: create_backend(f"http://h/v1?api_key={S}&timeout=zz"),
    "http unknown option": lambda: create_backend(f"http://u:{S}@h/v1?api_key={S}&bogus=1"),
    "pagerduty key": lambda: PagerDutyBackend(S),
    "pagerduty url key": lambda: create_backend(f"pagerduty://{S}"),
    "pagerduty endpoint": lambda: PagerDutyBackend(_PD, endpoint=f"ftp://u:{S}@h"),
    "slack scheme": lambda: SlackBackend(f"ftp://hooks/services/T/B/{S}"),
    "slack timeout": lambda: create_backend(f"slack://hooks.slack.com/services/T/B/{S}?timeout=x"),
    "slack unknown option": lambda: create_backend(f"slack://hooks.slack.com/T/B/{S}?bogus=1"),
    "telegram token": lambda: TelegramBackend(S, 1),
    "telegram api_url": lambda: TelegramBackend(f"123:{S}", 1, api_url=f"ftp://u:{S}@h"),
    "telegram two chats": lambda: create_backend(f"tgram://123:{S}/1/2"),
    "whatsapp url": lambda: create_backend(f"whatsapp://{S}@123"),
    "whatsapp to": lambda: _wa("https://graph.facebook.com/v1/1/messages", S, "abc"),
    "whatsapp api_url": lambda: _wa(f"ftp://u:{S}@h", S, "+1555"),
    "a url without a scheme": lambda: create_backend(S),
    "a url with a colon only": lambda: create_backend(f"pagerduty:{S}"),
}


@pytest.mark.parametrize("make", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_a_configuration_error_does_not_print_the_secret_it_is_about(make):
    with pytest.raises(alertkit.ConfigError) as info:
        make()
    shown = str(info.value) + "".join(traceback.format_exception(info.value))
    for part in (CONFIG_SECRET, *_HALF):
        assert part not in shown, shown
