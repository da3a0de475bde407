"""Circuit breaker and token bucket: the state machine, and the worker obeying it end to end."""

from __future__ import annotations

import time

from alertkit import Client, Delivered, RetryPolicy
from alertkit.delivery.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, TokenBucket
from tests.standins.http import Reply, ScriptedServer


def one_sender(url: str, policy: RetryPolicy) -> Client:
    """A client of the event API at ``url`` that sends one event at a time from one thread."""
    return Client(
        api_key="k",
        backends=[f"{url}/v1/events"],
        retry=policy,
        batch_size=1,
        threads=1,
        sample_system=False,
        register_atexit=False,
    )


def test_circuit_opens_after_threshold_and_probes_after_cooldown() -> None:
    circuit = CircuitBreaker(threshold=3, cooldown=10.0, max_cooldown=40.0)
    assert circuit.allows(0.0)
    assert not circuit.record_failure(0.0) and not circuit.record_failure(0.0)
    assert circuit.record_failure(0.0) and circuit.state == OPEN
    assert not circuit.allows(5.0)
    assert circuit.wait_time(5.0) == 5.0
    assert circuit.allows(10.0) and circuit.state == HALF_OPEN
    circuit.start_probe()
    assert not circuit.allows(10.0), "one probe at a time"
    assert circuit.record_failure(10.0) and circuit.cooldown == 20.0, "failed probe doubles"
    assert circuit.allows(30.0)
    assert circuit.record_success() and circuit.state == CLOSED and circuit.cooldown == 10.0


def test_cooldown_has_a_ceiling() -> None:
    circuit = CircuitBreaker(threshold=1, cooldown=10.0, max_cooldown=25.0)
    now = 0.0
    for _ in range(5):
        circuit.record_failure(now)
        now = circuit.open_until
        circuit.allows(now)
    assert circuit.cooldown == 25.0


def test_token_bucket_waits_instead_of_dropping() -> None:
    bucket = TokenBucket(rate=2, per=1.0)
    assert bucket.reserve(2, bucket.stamp) == 0.0
    wait = bucket.reserve(1, bucket.stamp)
    assert 0.4 < wait <= 0.5
    assert bucket.reserve(1, bucket.stamp + 0.5) == 0.0


def test_open_circuit_stops_sending_then_a_probe_recovers() -> None:
    """A dead destination gets `threshold` attempts, not one per event; after the cool-down a
    single probe goes out and, once it succeeds, everything queued is delivered."""
    with ScriptedServer([Reply(500)]) as server:
        policy = RetryPolicy(
            backoff=0.01,
            max_backoff=0.02,
            max_attempts=50,
            circuit_threshold=3,
            circuit_cooldown=0.5,
            deadline=30,
        )
        client = one_sender(server.url, policy)
        futures = [
            client.send_event_async(client.create_new_app_event(event_message=str(i)))
            for i in range(20)
        ]
        time.sleep(0.3)
        assert client.stats()["http"]["circuit"] == "open"
        assert len(server.requests) == 3, "no hammering while the circuit is open"
        server.set_script([Reply(200)])
        assert client.flush(10)
        assert all(isinstance(f.result()["http"], Delivered) for f in futures)
        assert client.stats()["http"]["circuit"] == "closed"
        client.shutdown(1)


def test_rate_limited_backend_is_paced_not_dropped() -> None:
    from alertkit.testing import MemoryBackend

    class Paced(MemoryBackend):
        rate_limit = (5, 1.0)

    backend = Paced()
    client = Client(
        backends=[backend], batch_size=1, sample_system=False, register_atexit=False, storm_window=0
    )
    start = time.monotonic()
    for i in range(8):
        client.send_event_async(client.create_new_app_event(event_message=str(i)))
    assert client.flush(10)
    assert len(backend.events) == 8
    assert time.monotonic() - start >= 0.5, "the 6th to 8th events waited for tokens"
    client.shutdown(1)


def test_a_backend_can_have_its_own_retry_policy() -> None:
    from alertkit import Dropped
    from alertkit.backends.http import HttpBackend

    with ScriptedServer([Reply(500)]) as server:
        strict = HttpBackend(f"{server.url}/v1/events", name="strict")
        strict.retry = RetryPolicy(max_attempts=1)
        client = Client(
            api_key="k",
            backends=[strict],
            retry=RetryPolicy(max_attempts=50),
            sample_system=False,
            register_atexit=False,
        )
        result = client.send_event(client.create_new_app_event(), timeout=5)["strict"]
        assert isinstance(result, Dropped) and "1 attempts" in result.reason
        assert len(server.requests) == 1
        client.shutdown(1)


def test_pagerduty_is_paced_to_its_documented_rate() -> None:
    from alertkit.backends.pagerduty import PagerDutyBackend

    assert PagerDutyBackend.rate_limit == (120, 60.0)


def test_429_with_retry_after_pauses_the_backend_instead_of_opening_the_circuit() -> None:
    """A rate-limited destination is up: everything waits the time it asked for, nothing hammers
    it meanwhile, and the circuit stays closed so recovery is immediate."""
    replies = [Reply(429, headers={"Retry-After": "1"})] * 2 + [Reply(200)]
    with ScriptedServer(replies) as server:
        policy = RetryPolicy(backoff=0.01, max_backoff=0.02, circuit_threshold=2, deadline=30)
        client = one_sender(server.url, policy)
        for i in range(20):
            client.send_event_async(client.create_new_app_event(event_message=str(i)))
        time.sleep(0.5)
        assert len(server.requests) == 1, "paused after the first 429"
        assert client.stats()["http"]["circuit"] == "closed"
        assert client.flush(15)
        assert client.stats()["http"]["delivered"] == 20
        assert len(server.requests) == 22, "two 429s, then each event once"
        client.shutdown(1)


def test_shutdown_returns_at_once_when_the_circuit_is_open_and_nothing_can_go_out() -> None:
    from tests.standins.http import free_port

    policy = RetryPolicy(
        backoff=0.01, max_backoff=0.02, circuit_threshold=1, circuit_cooldown=30, deadline=60
    )
    client = Client(
        api_key="k",
        backends=[f"http://127.0.0.1:{free_port()}/v1/events"],
        retry=policy,
        sample_system=False,
        register_atexit=False,
        timeout=1,
    )
    for i in range(5):
        client.send_event_async(client.create_new_app_event(event_message=str(i)))
    deadline = time.monotonic() + 5
    while client.stats()["http"]["circuit"] != "open" and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    client.shutdown(5.0)
    assert time.monotonic() - start < 1.0, "no waiting out a budget that cannot help"
    assert client.stats()["http"]["dropped"] == 5
