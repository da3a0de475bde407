"""The Redis backend: the Chouette-IoT layout read back from a real redis-server (WIRE.md 3)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from alertkit import Client, RetryPolicy
from alertkit.backends import RedisBackend, create_backend
from alertkit.backends.redis import LOGS_QUEUE, METRICS_QUEUE
from alertkit.capture.handler import AlertHandler
from alertkit.model.errors import ConfigError, MissingDependency
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.outcomes import Delivered, RetryLater, Skipped
from tests.clients import clients_for_test
from tests.standins import redis as servers
from tests.standins.redis import free_port, read_queue

redis_server_session = servers.redis_server_session
redis_server = servers.redis_server
redis_server_own = servers.redis_server_own

FAST_RETRY = RetryPolicy(backoff=0.01, max_backoff=0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        pause.wait(0.01)
    return condition()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    with clients_for_test(shutdown=1.0, retry=FAST_RETRY) as make:
        yield make


@pytest.fixture
def make_logger() -> Iterator[Callable[[Client, str], logging.Logger]]:
    made: list[tuple[logging.Logger, logging.Handler]] = []

    def make(client: Client, name: str) -> logging.Logger:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        handler = AlertHandler(client=client, level=logging.DEBUG)
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- the wire format ------------------------------------------------------------------------------


def test_log_record_matches_wire_section_3_field_by_field(redis_server, make_client, make_logger):
    """A logged exception becomes exactly the Datadog log JSON the Chouette aggregator reads."""
    client = make_client(
        RedisBackend(redis_server.url, service_name="checkout"), tags={"env": "prod"}
    )
    logger = make_logger(client, "app.payments")
    kept = Keep()
    logger.addHandler(kept)
    try:
        1 / 0
    except ZeroDivisionError:
        logger.exception(
            "card %s declined for %s", "visa", "jill", extra={"order": 42, "tags": {"shop": "eu"}}
        )
    assert client.flush(5)

    [(member, score, record)] = read_queue(redis_server, LOGS_QUEUE)
    assert uuid.UUID(member).version == 4
    assert score == kept.records[0].created
    assert set(record) == {
        "date",
        "ddsource",
        "service",
        "ddtags",
        "level",
        "message",
        "exc_info",
        "order",
    }
    assert record["date"] == datetime.fromtimestamp(score, tz=timezone.utc).isoformat(
        timespec="microseconds"
    )
    assert record["date"].endswith("+00:00")
    assert record["ddsource"] == "checkout"
    assert record["service"] == "checkout"
    assert record["ddtags"] == ["env:prod", "shop:eu"]
    assert record["level"] == "ERROR"
    assert record["message"] == {
        "msg": "card visa declined for jill",
        "template": "card %s declined for %s",
    }
    assert record["exc_info"].startswith("Traceback (most recent call last):")
    assert record["exc_info"].endswith("ZeroDivisionError: division by zero")
    assert record["order"] == 42
    assert read_queue(redis_server, METRICS_QUEUE) == []


def test_service_name_defaults_to_app_name_then_logger_name(redis_server, make_client, make_logger):
    """Without service_name, ``service``/``ddsource`` are the client's app_name, else the logger."""
    named = make_client(RedisBackend(redis_server.url), app_name="shop-api")
    make_logger(named, "app.one").warning("from the named app")
    assert named.flush(5)
    unnamed = make_client(RedisBackend(redis_server.url))
    make_logger(unnamed, "app.two").warning("from a logger")
    assert unnamed.flush(5)

    services = {
        r["message"]["msg"]: (r["service"], r["ddsource"])
        for _, _, r in read_queue(redis_server, LOGS_QUEUE)
    }
    assert services == {
        "from the named app": ("shop-api", "shop-api"),
        "from a logger": ("app.two", "app.two"),
    }


def test_tags_come_from_the_client_and_from_extra(redis_server, make_client, make_logger):
    """``ddtags`` is a JSON list of "k:v": client tags, then the record's extra tags."""
    client = make_client(RedisBackend(redis_server.url), tags=["region:eu-west", "canary"])
    logger = make_logger(client, "app.tags")
    logger.error("tagged", extra={"tags": {"user": "jill", "region": "eu-north"}})
    logger.error("untagged")
    assert client.flush(5)
    tags = {r["message"]["msg"]: r["ddtags"] for _, _, r in read_queue(redis_server, LOGS_QUEUE)}
    assert tags == {
        "tagged": ["region:eu-north", "canary", "user:jill"],
        "untagged": ["region:eu-west", "canary"],
    }


def test_scope_tags_join_the_client_tags(redis_server, make_client, make_logger):
    """Inside ``client.scope(tags=...)`` the scope's tags override the client's, extra's win."""
    client = make_client(RedisBackend(redis_server.url), tags={"env": "prod"})
    logger = make_logger(client, "app.scoped")
    with client.scope(tags={"route": "checkout", "env": "canary"}):
        logger.error("in a request", extra={"tags": {"user": "jill"}})
    assert client.flush(5)
    [(_, _, record)] = read_queue(redis_server, LOGS_QUEUE)
    assert sorted(record["ddtags"]) == ["env:canary", "route:checkout", "user:jill"]


def test_event_without_logging_gets_its_stack_trace_as_exc_info(redis_server, make_client):
    """An AppEvent made with exc_info (no formatted text) still carries the trace as text."""
    client = make_client(RedisBackend(redis_server.url, service_name="svc"))
    try:
        {}["missing"]
    except KeyError:
        event = client.create_new_app_event("fatal", exc_info=True)
    results = client.send_event(event, timeout=5)
    assert isinstance(results["redis"], Delivered)
    [(_, _, record)] = read_queue(redis_server, LOGS_QUEUE)
    assert record["level"] == "CRITICAL"
    assert record["message"] == {"msg": "'missing'"}
    assert "test_event_without_logging_gets_its_stack_trace_as_exc_info" in record["exc_info"]
    assert record["exc_info"].endswith("KeyError: 'missing'")


def test_extra_fields_named_like_log_keys_do_not_overwrite_them(
    redis_server, make_client, make_logger
):
    """An extra field named ``level`` or ``service`` goes under ``extra``, not over the real one."""
    client = make_client(RedisBackend(redis_server.url, service_name="svc"))
    make_logger(client, "app.clash").warning(
        "clash", extra={"level": "mine", "service": "x", "ok": True}
    )
    assert client.flush(5)
    [(_, _, record)] = read_queue(redis_server, LOGS_QUEUE)
    assert (record["level"], record["service"], record["ok"]) == ("WARNING", "svc", True)
    assert record["extra"] == {"level": "mine", "service": "x"}


def test_log_level_filter_from_chouette_log_level(
    redis_server, make_client, make_logger, monkeypatch
):
    """CHOUETTE_LOG_LEVEL=WARNING keeps INFO records out of Redis; metrics still go through."""
    monkeypatch.setenv("CHOUETTE_LOG_LEVEL", "warning")
    backend = RedisBackend(redis_server.url)
    assert backend.min_level == logging.WARNING
    client = make_client(backend)
    logger = make_logger(client, "app.levels")
    logger.info("quiet")
    logger.warning("loud")
    client.metrics.increment("app.hits")
    info = client.send_event(client.create_new_app_event("info"), timeout=5)
    assert client.flush(5)
    assert isinstance(info["redis"], Skipped)
    assert [r["message"]["msg"] for _, _, r in read_queue(redis_server, LOGS_QUEUE)] == ["loud"]
    assert [r["metric"] for _, _, r in read_queue(redis_server, METRICS_QUEUE)] == ["app.hits"]


def test_chouette_log_level_rules(monkeypatch):
    """Names and numbers are levels, an explicit min_level wins, nonsense is a ConfigError."""
    monkeypatch.setenv("CHOUETTE_LOG_LEVEL", "40")
    assert RedisBackend().min_level == 40
    monkeypatch.setenv("CHOUETTE_LOG_LEVEL", "NOTSET")
    assert RedisBackend().min_level == 0
    monkeypatch.setenv("CHOUETTE_LOG_LEVEL", "ERROR")
    assert RedisBackend(min_level="debug").min_level == logging.DEBUG
    monkeypatch.setenv("CHOUETTE_LOG_LEVEL", "loudest")
    with pytest.raises(ConfigError, match="CHOUETTE_LOG_LEVEL"):
        RedisBackend()


# -- batching and idempotency ---------------------------------------------------------------------


def _envelopes(count: int) -> list[Envelope]:
    made = []
    for n in range(count):
        event = AppEvent(api_key="", classification="issue", event_type="t", event_message=f"m{n}")
        made.append(Envelope(event=event, levelno=logging.ERROR))
        made.append(
            Envelope(
                event=event,
                kind="metric",
                payload={
                    "metric": "batch.size",
                    "type": "count",
                    "value": n,
                    "timestamp": 1_700_000_000.0 + n,
                    "tags": {},
                },
            )
        )
    return made


def test_a_batch_is_one_multi_exec(redis_server):
    """200 logs and metrics cost one MULTI/EXEC holding one ZADD and one HSET per queue."""
    backend = RedisBackend(redis_server.url)
    batch = _envelopes(100)
    with redis_server.client() as conn:
        conn.config_resetstat()
        outcomes = backend.send(batch)
        stats = conn.info("commandstats")
    backend.close()
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert len(outcomes) == len(batch)
    assert outcomes[0].info["queue"] == LOGS_QUEUE
    assert outcomes[1].info["queue"] == METRICS_QUEUE
    assert stats["cmdstat_multi"]["calls"] == 1
    assert stats["cmdstat_exec"]["calls"] == 1
    assert stats["cmdstat_zadd"]["calls"] == 2
    assert stats["cmdstat_hset"]["calls"] == 2
    assert len(read_queue(redis_server, LOGS_QUEUE)) == 100
    metrics = read_queue(redis_server, METRICS_QUEUE)
    assert [score for _, score, _ in metrics] == [1_700_000_000.0 + n for n in range(100)]


def test_a_retried_envelope_is_written_once(redis_server):
    """The member comes from the event id: a retry after an ambiguous failure adds no duplicate."""
    backend = RedisBackend(redis_server.url)
    batch = _envelopes(3)
    backend.send(batch)
    backend.send(batch)
    backend.close()
    assert len(read_queue(redis_server, LOGS_QUEUE)) == 3
    members = [member for member, _, _ in read_queue(redis_server, METRICS_QUEUE)]
    assert len(members) == 3
    assert all(uuid.UUID(member).version == 4 for member in members)


# -- Redis failing --------------------------------------------------------------------------------


def test_redis_restart_mid_run_loses_nothing(redis_server_own, make_client, make_logger):
    """Events sent while Redis restarts are retried and all arrive once it is back."""
    client = make_client(
        RedisBackend(redis_server_own.url, service_name="svc"),
        retry=RetryPolicy(
            backoff=0.01,
            max_backoff=0.05,
            max_attempts=100_000,
            deadline=120,
            circuit_cooldown=0.05,
            circuit_max_cooldown=0.2,
        ),
    )
    logger = make_logger(client, "app.restart")
    for n in range(50):
        logger.error("before", extra={"n": n})
        client.metrics.count("restart.before", n)
    assert client.flush(5)
    before = read_queue(redis_server_own, LOGS_QUEUE)
    assert sorted(r["n"] for _, _, r in before) == list(range(50))

    redis_server_own.stop()
    for n in range(50, 100):
        logger.error("during", extra={"n": n})
        client.metrics.count("restart.during", n)
    assert wait_until(lambda: client.stats()["redis"]["retried"] > 0)
    assert client.stats()["redis"]["delivered"] == 100
    redis_server_own.start()
    for n in range(100, 150):
        logger.error("after", extra={"n": n})
        client.metrics.count("restart.after", n)
    assert client.flush(30)

    # redis-server keeps nothing across its restart (--save ''), so what is there now is exactly
    # what was sent during and after the outage.
    logs = read_queue(redis_server_own, LOGS_QUEUE)
    assert sorted(r["n"] for _, _, r in logs) == list(range(50, 150))
    metrics = read_queue(redis_server_own, METRICS_QUEUE)
    assert sorted(r["value"] for _, _, r in metrics) == list(range(50, 150))
    stats = client.stats()["redis"]
    assert (stats["delivered"], stats["dropped"]) == (300, 0)


def test_redis_down_never_raises_and_is_counted(make_client, make_logger):
    """With nothing listening, every call returns normally and the failures show in stats."""
    backend = RedisBackend(f"redis://:hunter22@127.0.0.1:{free_port()}/0")
    client = make_client(backend)
    logger = make_logger(client, "app.down")
    for n in range(100):
        logger.error("lost %d", n)
        assert client.metrics.gauge("down.gauge", n) is True
    assert wait_until(lambda: client.stats()["redis"]["retried"] > 0)
    stats = client.stats()["redis"]
    assert stats["delivered"] == 0
    assert (
        "Connection" in stats["last_reason"]["retried"]
        or "connect" in stats["last_reason"]["retried"].lower()
    )
    assert "hunter22" not in json.dumps(stats)
    client.shutdown(0.1)  # what is still retrying is given up and counted, not waited for


class HangingRedis:
    """Accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connected = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def test_a_hanging_redis_costs_the_caller_nothing(make_client, make_logger):
    """While the delivery thread is stuck on Redis, logging and metric calls still return."""
    hanging = HangingRedis()
    try:
        client = make_client(RedisBackend(f"redis://127.0.0.1:{hanging.port}/0", socket_timeout=60))
        logger = make_logger(client, "app.hang")
        logger.error("first")
        assert hanging.connected.wait(10)
        for n in range(1000):
            logger.error("stuck %d", n)
            client.metrics.histogram("hang.latency", n / 10)
            with client.metrics.timed("hang.block"):
                pass
        # Every call above returned while the first send was still waiting for Redis.
        assert client.stats()["redis"]["delivered"] == 0
        assert client.pipeline.workers[0].queued() > 0
        client.shutdown(0.2)
        assert client.stats()["redis"]["delivered"] == 0
    finally:
        hanging.close()


# -- configuration --------------------------------------------------------------------------------


def test_password_and_db_come_from_the_url(redis_server_own):
    """A password-protected Redis takes the URL's password; the db number picks the database."""
    with redis_server_own.client() as conn:
        conn.config_set("requirepass", "s3cret-pw")
    good = RedisBackend(f"redis://:s3cret-pw@127.0.0.1:{redis_server_own.port}/3")
    bad = RedisBackend(f"redis://:wrong-pw@127.0.0.1:{redis_server_own.port}/3")
    batch = _envelopes(1)
    assert all(isinstance(o, Delivered) for o in good.send(batch))
    refused = bad.send(batch)
    good.close()
    bad.close()
    assert all(isinstance(o, RetryLater) for o in refused)
    assert "wrong-pw" not in refused[0].reason
    import redis

    with redis.Redis(
        host="127.0.0.1", port=redis_server_own.port, db=3, password="s3cret-pw"
    ) as conn:
        assert conn.zcard(f"{LOGS_QUEUE}.keys") == 1
        assert conn.zcard(f"{METRICS_QUEUE}.keys") == 1


def test_url_forms_and_masking():
    """redis and rediss URLs parse into host, port, db and credentials; repr masks the password."""
    backend = create_backend(
        "rediss://ops:pa55word@cache.internal:6380/2?service_name=api"
        "&socket_timeout=1.5&max_connections=8"
    )
    assert isinstance(backend, RedisBackend)
    assert (backend.tls, backend.host, backend.port, backend.db) == (
        True,
        "cache.internal",
        6380,
        2,
    )
    assert (backend.username, backend.password) == ("ops", "pa55word")
    assert (backend.service_name, backend.socket_timeout, backend.max_connections) == (
        "api",
        1.5,
        8,
    )
    assert "pa55word" not in repr(backend)
    assert repr(backend) == "<RedisBackend name='redis' rediss://ops:****@cache.internal:6380/2>"
    import redis

    assert backend._pool.connection_class is redis.SSLConnection
    plain = create_backend("redis://localhost")
    assert (plain.tls, plain.port, plain.db, plain.password) == (False, 6379, 0, None)


def test_redis_host_and_port_from_the_environment(monkeypatch):
    """With no URL, or a URL without a host, REDIS_HOST and REDIS_PORT apply, as in Chouette."""
    monkeypatch.setenv("REDIS_HOST", "redis.local")
    monkeypatch.setenv("REDIS_PORT", "7777")
    assert (RedisBackend().host, RedisBackend().port) == ("redis.local", 7777)
    assert create_backend("redis:///4").db == 4
    assert create_backend("redis://").host == "redis.local"
    assert (RedisBackend("redis://other:1234").host, RedisBackend("redis://other:1234").port) == (
        "other",
        1234,
    )
    monkeypatch.delenv("REDIS_HOST")
    monkeypatch.delenv("REDIS_PORT")
    assert (RedisBackend().host, RedisBackend().port) == ("127.0.0.1", 6379)


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://localhost", "redis:// or rediss://"),
        ("redis://localhost:port", "port"),
        ("redis://localhost/zero", "database"),
        ("redis://localhost?colour=blue", "unknown URL option"),
        ("redis://localhost?socket_timeout=soon", "redis:"),
        ("redis://localhost?socket_timeout=0", "socket_timeout"),
        ("redis://localhost?max_connections=0", "max_connections"),
        ("redis://localhost?ssl_ca_certs=/ca.pem", "rediss"),
    ],
)
def test_bad_config_is_rejected_at_construction(url, message):
    """Each malformed URL or option is a ConfigError naming what is wrong."""
    with pytest.raises(ConfigError, match=message):
        RedisBackend.from_url(url)


def test_query_options_given_to_the_constructor_are_refused():
    """RedisBackend('redis://h?x=1') would silently ignore x; it says where options go instead."""
    with pytest.raises(ConfigError, match="keywords"):
        RedisBackend("redis://localhost?service_name=api")


def test_missing_redis_py_is_a_clear_error(monkeypatch):
    """Without redis-py, construction names the package and the extra to install."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependency, match=r"alertkit\[redis\]"):
        RedisBackend()


def test_log_dates_are_written_exactly_as_datetime_isoformat_writes_them():
    """The per-second cache of the date must round microseconds as datetime does."""
    import random

    from alertkit.backends.redis import _UtcDates

    dates = _UtcDates()
    rng = random.Random(4)
    stamps = [0.0, 1.5, 1763834586.0000005, 1763834586.9999995, 1763834586.9999996, -1.25]
    stamps += [rng.uniform(0, 4e9) for _ in range(2000)]
    stamps += [1763834586 + rng.random() for _ in range(2000)]
    for stamp in stamps:
        expected = datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(timespec="microseconds")
        assert dates.iso(stamp) == expected, stamp


def test_breadcrumbs_and_fingerprint_stay_in_the_log_json(redis_server, make_client, make_logger):
    client = make_client(RedisBackend(redis_server.url))
    logger = make_logger(client, "app.crumbs")
    logger.info("loaded cart %s", 7, extra={"cart": 7})
    logger.error("checkout failed", extra={"fingerprint": ["checkout"]})
    assert client.flush(5)
    records = [record for _, _, record in read_queue(redis_server, LOGS_QUEUE)]
    info, error = sorted(records, key=lambda r: r["date"])
    assert "breadcrumbs" not in info, "an info record carries none"
    [crumb] = error["breadcrumbs"]
    assert crumb["message"] == "loaded cart 7" and crumb["data"] == {"cart": 7}
    assert error["fingerprint"] == ["checkout"]
