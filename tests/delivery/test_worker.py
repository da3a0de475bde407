"""Settling deliveries: each gets one final result, a batch's shared ticket fires once."""

from __future__ import annotations

import time

from alertkit.delivery.worker import BackendWorker, Delivery, Ticket
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.outcomes import Delivered, Dropped
from alertkit.model.retry import RetryPolicy
from alertkit.testing import MemoryBackend


def envelope(message: str) -> Envelope:
    event = AppEvent(api_key="", classification="issue", event_type="t", event_message=message)
    return Envelope(event=event)


def worker() -> BackendWorker:
    return BackendWorker(
        MemoryBackend(name="memory"),
        policy=RetryPolicy(),
        queue_size=100,
        batch_size=None,
        threads=1,
        on_give_up=lambda backend, deliveries, reason: Dropped(reason),
    )


def test_a_second_result_for_a_delivery_is_ignored():
    finished: list[dict] = []
    ticket = Ticket(2, lambda t: finished.append(dict(t.results or {})))
    first, second = (Delivery(envelope(m), ticket, 0.0) for m in ("a", "b"))
    first.settle("memory", Dropped("shut down"))
    first.settle("memory", Delivered())  # a late answer after shutdown gave up on it
    assert ticket.remaining == 1 and not finished
    second.settle("other", Delivered())
    assert finished == [{"memory": Dropped("shut down"), "other": Delivered()}]


def test_a_delivered_batch_settles_its_shared_ticket_once_and_skips_settled_ones():
    fired: list[int] = []
    shared = Ticket(0, lambda t: fired.append(t.remaining), None)
    batch = [Delivery(envelope(str(i)), shared, 0.0) for i in range(5)]
    shared.remaining = len(batch)
    batch[0].settle("memory", Dropped("queue full"))  # already final: not counted twice
    w = worker()
    w._sending.update(batch)
    w._delivered(batch, [Delivered()] * len(batch))
    assert fired == [0], "the shared ticket fired exactly once, when every delivery had answered"
    assert all(d.settled for d in batch) and not w._sending
    assert w.stats.snapshot(0)["delivered"] == 5


def test_delivered_outcomes_are_not_scanned_by_the_garbage_collector() -> None:
    """One outcome is made per delivered event: tracked ones made collections run more often."""
    import gc

    outcome = Delivered({"queue": "q", "key": "k"})
    assert not gc.is_tracked(outcome) and not gc.is_tracked(Delivered())


def test_an_event_whose_next_attempt_lies_past_the_budget_is_dropped_as_not_retried() -> None:
    """Its result says what happened: not retried (the retry was due after the budget), not
    that the budget ran out (the shutdown took no time)."""
    from alertkit import Client
    from tests.standins.http import free_port

    client = Client(
        api_key="k",
        backends=[f"http://127.0.0.1:{free_port()}/v1/events"],
        sample_system=False,
        register_atexit=False,
        retry=RetryPolicy(backoff=30.0, max_backoff=30.0),
    )
    future = client.send_event_async(client.create_new_app_event(event_message="m"))
    deadline = time.monotonic() + 10
    while client.stats()["http"]["retried"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    client.shutdown(0.5)
    result = future.result(1)["http"]
    assert isinstance(result, Dropped)
    assert result.reason.startswith("not retried: the next attempt was due after"), result
