"""The delivery pipeline end to end against real local HTTP servers: volume, retries, bounded
shutdown, full queues, a dead destination, and fork."""

from __future__ import annotations

import os
import threading
import time

import pytest

from alertkit import Client, Delivered, Dropped, Rejected, RetryLater, RetryPolicy
from alertkit.testing import MemoryBackend
from tests.standins.http import Reply, ScriptedServer, free_port

FAST = RetryPolicy(backoff=0.01, max_backoff=0.05, max_attempts=5)


def http_client(url: str, **options) -> Client:
    options.setdefault("retry", FAST)
    return Client(
        api_key="test-key",
        backends=[f"{url}/api/v1/events"],
        sample_system=False,
        register_atexit=False,
        **options,
    )


def test_1000_async_events_all_arrive_after_shutdown() -> None:
    with ScriptedServer() as server:
        client = http_client(server.url)
        events = [client.create_new_app_event("error", event_message=f"n{i}") for i in range(1000)]
        for event in events:
            client.send_event_async(event)
        client.shutdown(30)
        messages = {r.json()["eventMessage"] for r in server.requests}
        assert len(server.requests) == 1000
        assert messages == {f"n{i}" for i in range(1000)}
        assert client.stats()["http"]["delivered"] == 1000


def test_500_then_200_is_retried_and_delivered() -> None:
    with ScriptedServer([Reply(500), Reply(503), Reply(200)]) as server:
        client = http_client(server.url)
        results = client.send_event(client.create_new_app_event(), timeout=10)
        assert isinstance(results["http"], Delivered)
        assert len(server.requests) == 3
        stats = client.stats()["http"]
        assert stats["retried"] == 2 and stats["delivered"] == 1
        assert "HTTP 503" in stats["last_reason"]["retried"]
        client.shutdown(2)


def test_429_retry_after_is_honoured() -> None:
    with ScriptedServer([Reply(429, headers={"Retry-After": "1"}), Reply(200)]) as server:
        client = http_client(server.url)
        start = time.monotonic()
        results = client.send_event(client.create_new_app_event(), timeout=10)
        assert isinstance(results["http"], Delivered)
        assert time.monotonic() - start >= 0.9, "waited as the server asked"
        client.shutdown(2)


def test_400_is_rejected_once_with_the_servers_message() -> None:
    reply = Reply(400, {"code": 400, "message": "apiKey is invalid", "fields": "apiKey"})
    with ScriptedServer([reply]) as server:
        client = http_client(server.url)
        results = client.send_event(client.create_new_app_event(), timeout=10)
        assert isinstance(results["http"], Rejected)
        assert "apiKey is invalid" in results["http"].reason
        assert len(server.requests) == 1
        assert client.stats()["http"]["rejected"] == 1
        client.shutdown(2)


def test_attempts_are_capped_and_the_drop_is_counted_and_reported() -> None:
    drops: list[str] = []
    with ScriptedServer([Reply(500)]) as server:
        client = http_client(
            server.url,
            retry=RetryPolicy(max_attempts=3, backoff=0.01),
            on_drop=lambda envelope, reason: drops.append(reason),
        )
        results = client.send_event(client.create_new_app_event(), timeout=10)
        assert isinstance(results["http"], Dropped)
        assert len(server.requests) == 3
        assert client.stats()["http"]["dropped"] == 1
        assert drops and "3 attempts" in drops[0]
        client.shutdown(2)


def test_shutdown_is_bounded_when_the_server_never_answers(capfd) -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        client = http_client(server.url, timeout=30)
        for _ in range(5):
            client.send_event_async(client.create_new_app_event())
        time.sleep(0.2)  # let the worker reach the hanging server
        start = time.monotonic()
        client.shutdown(1.0)
        assert time.monotonic() - start < 3.0
        assert client.stats()["http"]["dropped"] == 5
        assert "not delivered: http: 5 dropped" in capfd.readouterr().err


def test_a_dead_destination_never_blocks_the_caller() -> None:
    client = Client(
        api_key="k",
        backends=[f"http://127.0.0.1:{free_port()}/v1/events"],
        retry=RetryPolicy(max_attempts=2, backoff=0.01, circuit_threshold=0),
        sample_system=False,
        register_atexit=False,
        timeout=1,
    )
    futures = [client.send_event_async(client.create_new_app_event()) for _ in range(200)]
    assert not all(f.done() for f in futures), "calls returned before delivery was attempted"
    assert client.flush(15)
    assert all(isinstance(f.result()["http"], Dropped) for f in futures)
    assert (
        "ConnectionRefused" in client.stats()["http"]["last_reason"]["dropped"]
        or "refused" in client.stats()["http"]["last_reason"]["dropped"].lower()
    )
    client.shutdown(1)


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    gate = threading.Event()

    class Slow(MemoryBackend):
        def send(self, batch):
            gate.wait(10)
            return super().send(batch)

    backend = Slow()
    client = Client(
        backends=[backend], queue_size=5, batch_size=1, sample_system=False, register_atexit=False
    )
    futures = [client.send_event_async(client.create_new_app_event()) for _ in range(50)]
    assert client.flush(0.5) is False
    gate.set()
    assert client.flush(10)
    dropped = [f for f in futures if isinstance(next(iter(f.result().values())), Dropped)]
    assert dropped, "some events were dropped rather than blocking"
    assert client.stats()["memory"]["dropped"] == len(dropped)
    assert len(backend.envelopes) + len(dropped) == 50, "every event accounted for"
    client.shutdown(1)


def test_one_slow_backend_does_not_delay_another() -> None:
    gate = threading.Event()

    class Stuck(MemoryBackend):
        def send(self, batch):
            gate.wait(10)
            return super().send(batch)

    fast = MemoryBackend(name="fast")
    client = Client(
        backends=[Stuck(name="stuck"), fast], sample_system=False, register_atexit=False
    )
    future = client.send_event_async(client.create_new_app_event())
    deadline = time.monotonic() + 5
    while not fast.envelopes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fast.envelopes) == 1 and not future.done()
    gate.set()
    assert set(future.result(5)) == {"stuck", "fast"}
    client.shutdown(1)


def test_min_level_routes_events(tmp_path) -> None:
    errors_only = MemoryBackend(name="errors", min_level="error")
    everything = MemoryBackend(name="all")
    client = Client(backends=[errors_only, everything], sample_system=False, register_atexit=False)
    client.send_event_async(client.create_new_app_event("warning"))
    client.send_event_async(client.create_new_app_event("fatal"))
    assert client.flush(5)
    assert [e.log_level for e in errors_only.events] == ["fatal"]
    assert len(everything.events) == 2
    assert client.stats()["errors"]["skipped"] == 0
    client.shutdown(1)


def test_a_backend_that_raises_is_retried_not_fatal() -> None:
    class Flaky(MemoryBackend):
        calls = 0

        def send(self, batch):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("disk on fire")
            return super().send(batch)

    backend = Flaky()
    client = Client(backends=[backend], retry=FAST, sample_system=False, register_atexit=False)
    results = client.send_event(client.create_new_app_event(), timeout=5)
    assert isinstance(results["memory"], Delivered)
    assert client.stats()["memory"]["retried"] == 1
    client.shutdown(1)


def test_an_ordered_backend_never_lets_a_later_event_overtake_a_retry() -> None:
    class Ordered(MemoryBackend):
        ordered = True
        failures = 2

        def send(self, batch):
            if batch[0].event.event_message == "trigger" and Ordered.failures:
                Ordered.failures -= 1
                return [RetryLater("HTTP 500")] * len(batch)
            return super().send(batch)

    backend = Ordered()
    client = Client(
        backends=[backend], retry=FAST, batch_size=1, sample_system=False, register_atexit=False
    )
    client.send_event_async(client.create_new_app_event(event_message="trigger"))
    client.send_event_async(client.create_new_app_event(event_message="resolve"))
    assert client.flush(5)
    assert [e.event_message for e in backend.events] == ["trigger", "resolve"]
    client.shutdown(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_workers_restart_in_a_forked_child() -> None:
    with ScriptedServer() as server:
        client = http_client(server.url)
        client.send_event(client.create_new_app_event(event_message="parent"), timeout=5)
        pid = os.fork()
        if pid == 0:  # the child: deliver one event through fresh threads, then exit
            ok = False
            try:
                result = client.send_event(
                    client.create_new_app_event(event_message="child"), timeout=5
                )
                ok = isinstance(result.get("http"), Delivered)
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sorted(r.json()["eventMessage"] for r in server.requests) == ["child", "parent"]
        client.shutdown(2)


def test_batches_default_to_each_backends_own_maximum_and_batch_size_lowers_it():
    class Big(MemoryBackend):
        max_batch = 300
        max_concurrency = 1  # one sender: a second thread would take a partial batch early

    sizes: dict[str, list[int]] = {"default": [], "lowered": []}
    for label, options in (("default", {}), ("lowered", {"batch_size": 7})):
        backend = Big()
        started = threading.Event()

        def send(batch, backend=backend, label=label, started=started):
            started.wait(5)  # hold the first batch until all events are queued
            sizes[label].append(len(batch))
            return MemoryBackend.send(backend, batch)

        backend.send = send  # type: ignore[method-assign]
        client = Client(backends=[backend], sample_system=False, register_atexit=False, **options)
        for i in range(601):
            client.send_event_async(client.create_new_app_event(event_message=f"e{i}"))
        deadline = time.monotonic() + 10
        while client.pipeline.workers[0].queued() < 601 and time.monotonic() < deadline:
            time.sleep(0.01)  # every event waits in the worker's queue before sending goes on
        started.set()
        assert client.flush(10)
        client.shutdown(1)
        assert sum(sizes[label]) == 601
    assert max(sizes["default"]) == 300 and max(sizes["lowered"]) == 7


def test_what_a_processor_of_the_application_puts_in_is_made_json_safe() -> None:
    """A processor that is not alertkit's own may put anything anywhere: the limits, which run
    after it, still make the details JSON-safe and keep their order."""
    import logging

    from alertkit import AlertHandler

    def spy(envelope):
        envelope.details["n"] = object()  # what such a processor may do
        return envelope

    backend = MemoryBackend()
    client = Client(
        backends=[backend], processors=(spy,), sample_system=False, register_atexit=False
    )
    log = logging.getLogger("tests.pipeline.app_processor")
    log.propagate = False
    log.addHandler(AlertHandler(client=client))
    log.error("boom %s", 1, extra={"n": 1, "a": "b"})
    assert client.flush(5)
    client.shutdown(1)
    (envelope,) = backend.envelopes
    assert list(envelope.details) == ["n", "a"]  # in the order the application gave them
    assert isinstance(envelope.details["n"], str)  # made JSON-safe
