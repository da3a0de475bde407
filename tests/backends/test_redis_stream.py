"""The redis-stream backend: whole envelopes in a real Redis Stream, read back as a relay would."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from alertkit import Client, RetryPolicy
from alertkit.backends import RedisStreamBackend, create_backend
from alertkit.capture.handler import AlertHandler
from alertkit.model.errors import ConfigError
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.outcomes import Delivered, RetryLater
from alertkit.relay.keys import stream_key
from tests.clients import clients_for_test
from tests.standins import redis as servers

redis_server_session = servers.redis_server_session
redis_server = servers.redis_server
redis_server_own = servers.redis_server_own

FAST_RETRY = RetryPolicy(backoff=0.01, max_backoff=0.05, deadline=1.0, circuit_cooldown=0.2)
PASSWORD = "s3cretRedisStreamPw"


def stream_url(server: servers.RedisServer, stream: str = "alertkit:events", **options: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"stream": stream, **options}.items())
    return f"redis-stream://127.0.0.1:{server.port}/0?{query}"


def read_stream(server: servers.RedisServer, stream: str = "alertkit:events") -> list[Envelope]:
    with server.client() as conn:
        entries = conn.xrange(stream_key(stream))
    return [msgspec.json.decode(fields[b"envelope"], type=Envelope) for _, fields in entries]


def event(message: str) -> AppEvent:
    return AppEvent(
        api_key="",
        classification="issue",
        event_type="Down",
        event_message=message,
        log_level="error",
        event_time=1,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        pause.wait(0.02)
    return condition()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    with clients_for_test(shutdown=1.0, retry=FAST_RETRY) as make:
        yield make


def test_a_logged_error_lands_whole_in_the_stream_with_its_id(redis_server, make_client):
    """Each envelope is one XADD entry whose 'envelope' field decodes to the same envelope."""
    client = make_client(stream_url(redis_server))
    logger = logging.getLogger("app.stream")
    logger.propagate = False
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        try:
            1 / 0
        except ZeroDivisionError:
            logger.exception("card %s declined", "visa", extra={"order": 42})
        assert client.flush(5)
    finally:
        logger.removeHandler(handler)
    [envelope] = read_stream(redis_server)
    assert envelope.logger_name == "app.stream"
    assert envelope.template == "card %s declined"
    assert envelope.details["order"] == 42
    assert envelope.event.event_type.endswith("ZeroDivisionError")
    assert envelope.levelno == logging.ERROR
    with redis_server.client() as conn:
        [(_, fields)] = conn.xrange("{alertkit:events}")
    assert fields[b"id"].decode() == envelope.event_id


def test_send_returns_the_entry_ids_and_keeps_links_and_incident_fields(redis_server):
    backend = RedisStreamBackend(f"redis-stream://127.0.0.1:{redis_server.port}/0")
    try:
        sent = Envelope(
            event("db down"),
            kind="resolve",
            incident_key="db-1",
            links=[{"href": "https://runbook", "text": "runbook"}],
            payload={"dedup_key": "db-1"},
        )
        [outcome] = backend.send([sent])
    finally:
        backend.close()
    assert isinstance(outcome, Delivered)
    assert outcome.info["stream"] == "{alertkit:events}"
    assert "-" in outcome.info["id"]
    [back] = read_stream(redis_server)
    assert msgspec.json.encode(back) == msgspec.json.encode(sent)


def test_maxlen_trims_and_counts_evictions_in_stats(redis_server, make_client):
    """With maxlen=10 the stream stays near 10 entries and stats() counts what was trimmed."""
    client = make_client(stream_url(redis_server, maxlen=10))
    for i in range(300):
        client.log({"eventmessage": f"event {i}"}, "error", exc_info=False)
    assert client.flush(5)
    with redis_server.client() as conn:
        length = conn.xlen("{alertkit:events}")
    stats = client.stats()["redis-stream"]
    assert stats["delivered"] == 300
    assert length < 300
    assert stats["stream_evicted"] == 300 - length


def test_the_password_is_masked_in_repr_describe_and_failures():
    backend = create_backend(
        f"rediss-stream://:{PASSWORD}@127.0.0.1:1/2?stream=s&connect_timeout=0.2"
    )
    try:
        assert isinstance(backend, RedisStreamBackend)
        assert backend.tls and backend.verify  # TLS, certificate checked by default
        assert backend.stream == "s" and backend.key == "{s}" and backend.db == 2
        [outcome] = backend.send([Envelope(event("x"))])
        texts = [repr(backend), backend.describe(), str(outcome)]
    finally:
        backend.close()
    assert isinstance(outcome, RetryLater)
    assert backend.describe() == "rediss-stream://:****@127.0.0.1:1/2?stream=s"
    assert not [text for text in texts if PASSWORD in text]


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("redis-stream://127.0.0.1/0?maxlen=lots", "maxlen"),
        ("redis-stream://127.0.0.1/0?stream=", "stream"),
        ("redis-stream://127.0.0.1/0?streams=x", "streams"),
        ("redis-stream://127.0.0.1/x", "database"),
    ],
)
def test_bad_urls_name_the_option(url, option):
    with pytest.raises(ConfigError, match=option):
        create_backend(url)


def test_redis_down_spools_then_replays_into_the_stream(redis_server_own, make_client, tmp_path):
    """spool=True: events written while Redis is down are spooled, never blocking the caller,
    and replayed into the stream when it is back."""
    client = make_client(stream_url(redis_server_own), spool=True, spool_path=tmp_path / "s.db")
    client.log({"eventmessage": "before"}, "error", exc_info=False)
    assert client.flush(5)
    redis_server_own.stop()
    for i in range(20):
        client.log({"eventmessage": f"during {i}"}, "error", exc_info=False)
    assert wait_until(lambda: client.stats()["redis-stream"]["spooled"] == 20)
    redis_server_own.start()  # empty again: no persistence in the test server
    assert wait_until(lambda: len(read_stream(redis_server_own)) == 20, 20)
    messages = sorted(e.event.event_message for e in read_stream(redis_server_own))
    assert messages == sorted(f"during {i}" for i in range(20))


def test_the_backend_imports_only_the_key_names_of_the_relay():
    """An application that writes to the stream does not load the relay."""
    import subprocess
    import sys

    code = (
        "import sys, alertkit.backends.redis_stream; "
        "print(sorted(m for m in sys.modules if m.startswith('alertkit.relay')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "['alertkit.relay', 'alertkit.relay.keys']"
