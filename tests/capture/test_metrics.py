"""Metrics: every Chouette type on the wire, validation at the call, ``timed`` in all its forms."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

import alertkit
import alertkit.capture.metrics
from alertkit import Client, RetryPolicy
from alertkit.backends import RedisBackend
from alertkit.backends.redis import METRICS_QUEUE
from alertkit.capture import submit
from alertkit.capture.metrics import Metrics, Timer
from alertkit.testing import MemoryBackend
from tests.standins import redis as servers
from tests.standins.redis import read_queue

redis_server_session = servers.redis_server_session
redis_server = servers.redis_server

TS = 1_700_000_000.25


@pytest.fixture
def memory() -> Iterator[tuple[Client, MemoryBackend]]:
    backend = MemoryBackend()
    client = Client(backends=[backend], sample_system=False, register_atexit=False)
    yield client, backend
    client.shutdown(1.0)


def payloads(client: Client, backend: MemoryBackend) -> list[dict[str, Any]]:
    assert client.flush(5)
    return [e.payload for e in backend.envelopes if e.kind == "metric"]  # type: ignore[misc]


@pytest.fixture
def fake_clock(monkeypatch) -> list[float]:
    """``timed`` reads these readings in turn: every timing is 0.25 s."""
    readings = [100.0, 100.25] * 50

    def clock() -> float:
        return readings.pop(0)

    monkeypatch.setattr(alertkit.capture.metrics, "_clock", clock)
    return readings


@pytest.fixture
def default_client() -> Iterator[tuple[Client, MemoryBackend]]:
    backend = MemoryBackend()
    client = alertkit.init(backends=[backend], sample_system=False, register_atexit=False)
    yield client, backend
    with submit._lock:
        submit._default = None
    client.shutdown(1.0)


# -- the wire -------------------------------------------------------------------------------------


def test_every_metric_type_is_written_exactly_in_the_chouette_layout(redis_server):
    """Each call is one ``chouette:metrics:raw`` message of WIRE.md 3, scored by its timestamp."""
    client = Client(
        backends=[RedisBackend(redis_server.url)],
        sample_system=False,
        register_atexit=False,
        retry=RetryPolicy(backoff=0.01, max_backoff=0.05),
    )
    try:
        m = client.metrics
        tags = {"shop": "eu", "tier": 2}
        assert m.count("shop.orders", 3, TS, tags)
        assert m.increment("shop.visits", timestamp=TS + 1, tags=tags)
        assert m.decrement("shop.stock", 2, TS + 2, tags)
        assert m.gauge("shop.queue", 7.5, TS + 3, tags)
        assert m.histogram("shop.latency", 0.125, TS + 4, tags)
        assert m.rate("shop.bytes", 1024, TS + 5, tags)
        assert m.set("shop.users", {"jill"}, TS + 6, tags)
        assert m.set("shop.carts", ["a", "b", "a"], TS + 7, ["shop:eu", "tier:2"])
        assert client.flush(5)
    finally:
        client.shutdown(1.0)

    written = read_queue(redis_server, METRICS_QUEUE)
    wire_tags = {"shop": "eu", "tier": "2"}
    assert [record for _, _, record in written] == [
        {"metric": "shop.orders", "type": "count", "value": 3, "timestamp": TS, "tags": wire_tags},
        {
            "metric": "shop.visits",
            "type": "count",
            "value": 1,
            "timestamp": TS + 1,
            "tags": wire_tags,
        },
        {
            "metric": "shop.stock",
            "type": "count",
            "value": -2,
            "timestamp": TS + 2,
            "tags": wire_tags,
        },
        {
            "metric": "shop.queue",
            "type": "gauge",
            "value": 7.5,
            "timestamp": TS + 3,
            "tags": wire_tags,
        },
        {
            "metric": "shop.latency",
            "type": "histogram",
            "value": 0.125,
            "timestamp": TS + 4,
            "tags": wire_tags,
        },
        {
            "metric": "shop.bytes",
            "type": "rate",
            "value": 1024,
            "timestamp": TS + 5,
            "tags": wire_tags,
        },
        {
            "metric": "shop.users",
            "type": "set",
            "value": ["jill"],
            "timestamp": TS + 6,
            "tags": wire_tags,
        },
        {
            "metric": "shop.carts",
            "type": "set",
            "value": ["a", "b", "a"],
            "timestamp": TS + 7,
            "tags": wire_tags,
        },
    ]
    assert [score for _, score, _ in written] == [TS + n for n in range(8)]


def test_default_timestamp_is_now_and_tags_default_to_empty(memory):
    """Without a timestamp the call time is used (float seconds); without tags, ``{}``."""
    client, backend = memory
    before = time.time()
    client.metrics.gauge("g", 1)
    after = time.time()
    [payload] = payloads(client, backend)
    assert isinstance(payload["timestamp"], float)
    assert before <= payload["timestamp"] <= after
    assert payload["tags"] == {}


def test_module_level_functions_use_the_default_client(default_client):
    """``alertkit.capture.metrics.count`` and friends go through the client of ``alertkit.init``."""
    client, backend = default_client
    alertkit.capture.metrics.count("a.count", 2, TS)
    alertkit.capture.metrics.increment("a.inc", timestamp=TS)
    alertkit.capture.metrics.decrement("a.dec", timestamp=TS)
    alertkit.capture.metrics.gauge("a.gauge", 3, TS)
    alertkit.capture.metrics.histogram("a.hist", 4, TS)
    alertkit.capture.metrics.rate("a.rate", 5, TS)
    alertkit.capture.metrics.set("a.set", [1, 2], TS)
    got = [(p["metric"], p["type"], p["value"]) for p in payloads(client, backend)]
    assert got == [
        ("a.count", "count", 2),
        ("a.inc", "count", 1),
        ("a.dec", "count", -1),
        ("a.gauge", "gauge", 3),
        ("a.hist", "histogram", 4),
        ("a.rate", "rate", 5),
        ("a.set", "set", [1, 2]),
    ]


def test_metrics_ignore_level_filters(monkeypatch):
    """A backend's min_level applies to log events, never to metrics."""
    backend = MemoryBackend(min_level="critical")
    client = Client(backends=[backend], sample_system=False, register_atexit=False)
    try:
        client.metrics.increment("always")
        client.log({"eventmessage": "dropped by level"}, "error", exc_info=False)
        assert client.flush(5)
        assert [e.kind for e in backend.envelopes] == ["metric"]
    finally:
        client.shutdown(1.0)


def test_the_property_is_one_object_per_client(memory):
    client, _ = memory
    assert isinstance(client.metrics, Metrics)
    assert client.metrics is client.metrics


def test_after_shutdown_a_metric_call_returns_false(memory):
    """A metric sent after shutdown is counted as dropped; the call does not raise."""
    client, _ = memory
    client.shutdown(1.0)
    assert client.metrics.count("late", 1) is False


# -- validation at the call -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "3", None, True, [1], 1j])
def test_bad_values_are_refused_at_the_call(memory, value):
    """NaN, infinities and non-numbers raise ValueError at once and nothing is queued."""
    client, backend = memory
    with pytest.raises(ValueError, match="finite number"):
        client.metrics.gauge("g", value)
    assert payloads(client, backend) == []


@pytest.mark.parametrize("name", ["", " ", "has space", "tab\tin", "new\nline", None, 3, b"x"])
def test_bad_names_are_refused(memory, name):
    """A metric name must be a non-empty string without whitespace."""
    client, _ = memory
    with pytest.raises(ValueError, match="metric name"):
        client.metrics.count(name, 1)


@pytest.mark.parametrize("tags", [{"": "x"}, {"a b": "x"}, {None: "x"}, "k:v", [3]])
def test_bad_tags_are_refused(memory, tags):
    """Tag keys follow the name rules; tags are a mapping or a list of "k:v" strings."""
    client, _ = memory
    with pytest.raises(ValueError, match="tag"):
        client.metrics.count("ok", 1, tags=tags)


def test_bad_timestamps_and_set_values_are_refused(memory):
    client, backend = memory
    with pytest.raises(ValueError, match="finite number"):
        client.metrics.count("c", 1, timestamp=math.nan)
    with pytest.raises(ValueError, match="timestamp"):
        client.metrics.count("c", 1, timestamp=-5)
    with pytest.raises(ValueError, match="finite number"):
        client.metrics.set("s", ["a", math.nan])
    with pytest.raises(ValueError, match="list or set"):
        client.metrics.set("s", "abc")
    assert payloads(client, backend) == []


def test_numbers_of_other_types_are_accepted(memory):
    """Real numbers that are not int or float (fractions, int subclasses) are sent as such."""
    from fractions import Fraction

    client, backend = memory
    client.metrics.gauge("g", Fraction(1, 4), TS)
    assert [p["value"] for p in payloads(client, backend)] == [0.25]


def test_distribution_is_refused_with_a_clear_error(memory, default_client):
    """Chouette cannot aggregate distributions: both spellings say so and point to histogram."""
    client, _ = memory
    with pytest.raises(NotImplementedError, match="histogram"):
        client.metrics.distribution("d", 1)
    with pytest.raises(NotImplementedError, match="distribution"):
        alertkit.capture.metrics.distribution("d", 1)


# -- timed ----------------------------------------------------------------------------------------


def test_timed_as_a_context_manager(memory, fake_clock):
    """``with timed(...)`` sends a histogram of the block's duration in seconds."""
    client, backend = memory
    with client.metrics.timed("block.seconds", tags={"step": "pay"}):
        pass
    [payload] = payloads(client, backend)
    assert payload["type"] == "histogram"
    assert (payload["metric"], payload["value"], payload["tags"]) == (
        "block.seconds",
        0.25,
        {"step": "pay"},
    )


def test_timed_in_milliseconds_sends_whole_numbers(memory, fake_clock):
    client, backend = memory
    with client.metrics.timed("block.ms", use_ms=True):
        pass
    [payload] = payloads(client, backend)
    assert payload["value"] == 250
    assert isinstance(payload["value"], int)


def test_timed_as_an_async_context_manager(memory, fake_clock):
    client, backend = memory

    async def work() -> None:
        async with client.metrics.timed("async.block"):
            await asyncio.sleep(0)

    asyncio.run(work())
    assert [(p["metric"], p["value"]) for p in payloads(client, backend)] == [("async.block", 0.25)]


def test_timed_decorator_passes_keyword_arguments_and_the_result(memory, fake_clock):
    """The decorated function gets its args and kwargs as given (the original dropped kwargs)."""
    client, backend = memory

    @client.metrics.timed("fn.seconds", tags={"fn": "add"})
    def add(a: int, b: int = 0, *, scale: int = 1) -> int:
        """Add and scale."""
        return (a + b) * scale

    assert add(1, b=2, scale=10) == 30
    assert add(4) == 4
    assert add.__name__ == "add"
    assert add.__doc__ == "Add and scale."
    assert [(p["metric"], p["value"], p["tags"]) for p in payloads(client, backend)] == [
        ("fn.seconds", 0.25, {"fn": "add"})
    ] * 2


def test_timed_decorator_on_async_def(memory, fake_clock):
    """An ``async def`` stays a coroutine function and is timed until it finishes."""
    client, backend = memory

    @client.metrics.timed("coro.ms", use_ms=True)
    async def fetch(key: str, *, default: str = "") -> str:
        await asyncio.sleep(0)
        return key + default

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch("k", default="!")) == "k!"
    assert [(p["metric"], p["value"]) for p in payloads(client, backend)] == [("coro.ms", 250)]


def test_timed_records_when_the_code_raises_and_lets_the_error_through(memory, fake_clock):
    client, backend = memory

    @client.metrics.timed("failing")
    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()
    with pytest.raises(KeyError), client.metrics.timed("failing.block"):
        raise KeyError("x")
    assert [p["metric"] for p in payloads(client, backend)] == ["failing", "failing.block"]


def test_one_timer_nests_and_is_reusable(memory, fake_clock):
    client, backend = memory
    timer = client.metrics.timed("reused")
    with timer, timer:
        pass
    with timer:
        pass
    assert len(payloads(client, backend)) == 3


def test_module_level_timed_finds_the_default_client_when_it_stops(default_client, fake_clock):
    """A function decorated before ``init`` reports through the client ``init`` made."""
    client, backend = default_client

    @alertkit.capture.metrics.timed("late.bound")
    def job(x: int, *, y: int) -> int:
        return x + y

    assert isinstance(alertkit.capture.metrics.timed("t"), Timer)
    assert job(1, y=2) == 3
    assert [(p["metric"], p["value"]) for p in payloads(client, backend)] == [("late.bound", 0.25)]


def test_timed_checks_its_name_when_made(memory):
    client, _ = memory
    with pytest.raises(ValueError, match="metric name"):
        client.metrics.timed("bad name")
    with pytest.raises(ValueError, match="tag key"):
        alertkit.capture.metrics.timed("ok", tags={"bad key": 1})
