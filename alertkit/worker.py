"""Delivery to one backend: a bounded queue, its worker threads, and the retry loop.

Each backend gets its own :class:`BackendWorker` (a bulkhead), so a hanging SMTP server cannot delay
a PagerDuty page. The worker takes batches, calls ``backend.send``, and acts on each outcome:
``Delivered`` and ``Rejected`` settle the event, ``RetryLater`` schedules another attempt after the
policy's (or the server's) delay, until the attempt cap or the deadline; what is given up goes to
``on_give_up`` (the pipeline counts it, or spools it).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from alertkit.backends.base import Backend
from alertkit.guard import capture_internal_exceptions
from alertkit.models import Envelope
from alertkit.outcomes import Delivered, Dropped, Outcome, Rejected, Result, RetryLater
from alertkit.retry import RetryPolicy
from alertkit.stats import BackendStats

log = logging.getLogger("alertkit.worker")


class Ticket:
    """Collects each backend's final result for one event; fires ``on_done`` once all have answered."""

    __slots__ = ("_lock", "_on_done", "_remaining", "results")

    def __init__(self, expected: int, on_done: Callable[[Ticket], None]) -> None:
        self.results: dict[str, Result] = {}
        self._remaining = expected
        self._lock = threading.Lock()
        self._on_done = on_done
        if expected == 0:
            on_done(self)

    def settle(self, backend: str, result: Result) -> None:
        """Record ``backend``'s final result; a second result for the same backend is ignored."""
        with self._lock:
            if backend in self.results:
                return
            self.results[backend] = result
            self._remaining -= 1
            done = self._remaining == 0
        if done:
            self._on_done(self)


class Delivery:
    """One envelope on its way to one backend."""

    __slots__ = ("attempt", "due", "envelope", "ticket")

    def __init__(self, envelope: Envelope, ticket: Ticket) -> None:
        self.envelope = envelope
        self.ticket = ticket
        self.attempt = 0
        self.due = 0.0


GiveUp = Callable[[Backend, Delivery, str], Result]


class BackendWorker:
    """The queue and threads that deliver to one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        policy: RetryPolicy,
        queue_size: int,
        batch_size: int,
        threads: int,
        on_give_up: GiveUp,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.queue_size = queue_size
        self.batch_size = max(1, min(batch_size, backend.max_batch))
        self.thread_count = max(1, min(threads, backend.max_concurrency))
        # An ordered backend (PagerDuty: a resolve must not overtake its trigger) gets one thread
        # and sends nothing new while an earlier event waits for its retry.
        self.ordered = bool(getattr(backend, "ordered", False))
        if self.ordered:
            self.thread_count = 1
        self.stats = BackendStats(backend.name)
        self._on_give_up = on_give_up
        self._reset()

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child (inherited threads do not exist there)."""
        self._cond = threading.Condition(threading.Lock())
        self._ready: deque[Delivery] = deque()
        self._retry: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._sending: set[Delivery] = set()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._abort = False
        self._close_by = float("inf")

    def after_fork(self) -> None:
        """Forget the parent's queue and threads; the parent delivers what it had queued."""
        self._reset()

    # -- producer side (the pipeline's policy thread) ----------------------------------------------

    def put(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; False when the queue is full or the worker is shutting down."""
        with self._cond:
            if self._closing or len(self._ready) + len(self._retry) >= self.queue_size:
                return False
            self._ready.append(delivery)
            if not self._threads:
                self._start()
            self._cond.notify()
        self.stats.add("enqueued")
        return True

    def _start(self) -> None:
        for index in range(self.thread_count):
            thread = threading.Thread(
                target=self._run, name=f"alertkit-{self.backend.name}-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def queued(self) -> int:
        """Events waiting: queued, scheduled for retry, or being sent."""
        with self._cond:
            return len(self._ready) + len(self._retry) + len(self._sending)

    # -- consumer side --------------------------------------------------------------------------

    def _take(self) -> list[Delivery] | None:
        with self._cond:
            while True:
                if self._abort:
                    return None
                now = time.monotonic()
                if self._ready and not (self.ordered and self._retry):
                    count = min(self.batch_size, len(self._ready))
                    batch = [self._ready.popleft() for _ in range(count)]
                    self._sending.update(batch)
                    return batch
                if self._retry and self._retry[0][0] <= now:
                    batch = []
                    while self._retry and self._retry[0][0] <= now and len(batch) < self.batch_size:
                        batch.append(heapq.heappop(self._retry)[2])
                    self._sending.update(batch)
                    return batch
                if self._closing and not self._retry:
                    return None
                timeout = None
                if self._retry:
                    timeout = self._retry[0][0] - now
                if self._closing:
                    remaining = self._close_by - now
                    timeout = remaining if timeout is None else min(timeout, remaining)
                    if timeout <= 0:
                        return None
                self._cond.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            outcomes = self._send(batch)
            for delivery, outcome in zip(batch, outcomes, strict=True):
                with capture_internal_exceptions():
                    self._handle(delivery, outcome)

    def _send(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        envelopes = [delivery.envelope for delivery in batch]
        try:
            outcomes = list(self.backend.send(envelopes))
        except Exception as exc:  # a backend bug must not kill the worker
            reason = self.backend_mask(f"{type(exc).__name__}: {exc}")
            log.warning("backend %s raised while sending: %s", self.backend.name, reason)
            return [RetryLater(reason)] * len(batch)
        if len(outcomes) != len(batch):
            reason = f"backend returned {len(outcomes)} outcomes for {len(batch)} events"
            log.warning("%s: %s", self.backend.name, reason)
            outcomes = (outcomes + [RetryLater(reason)] * len(batch))[: len(batch)]
        return outcomes

    def backend_mask(self, text: str) -> str:
        mask = getattr(self.backend, "mask", None)
        return mask(text) if callable(mask) else text

    def _done_sending(self, delivery: Delivery) -> None:
        """Stop counting ``delivery`` as in flight: before its result is settled, so that whoever
        waits on the result (``flush``) never sees it still queued."""
        with self._cond:
            self._sending.discard(delivery)
            self._cond.notify_all()

    def _handle(self, delivery: Delivery, outcome: Outcome) -> None:
        delivery.attempt += 1
        name = self.backend.name
        if not isinstance(outcome, RetryLater):
            self._done_sending(delivery)
        if isinstance(outcome, Delivered):
            self.stats.add("delivered")
            delivery.ticket.settle(name, outcome)
        elif isinstance(outcome, Rejected):
            self.stats.add("rejected", reason=outcome.reason)
            log.warning(
                "%s rejected event %s: %s", name, delivery.envelope.event_id, outcome.reason
            )
            delivery.ticket.settle(name, outcome)
        else:
            self._retry_or_give_up(delivery, outcome)

    def _retry_or_give_up(self, delivery: Delivery, outcome: RetryLater) -> None:
        wait = self.policy.delay(delivery.attempt, outcome.delay)
        age = time.time() - delivery.envelope.created
        reason = self.policy.gives_up(delivery.attempt, age, wait)
        due = time.monotonic() + wait
        with self._cond:
            if reason is None and self._closing and due > self._close_by:
                reason = "shutdown budget exhausted"
            self._sending.discard(delivery)
            if reason is None:
                delivery.due = due
                heapq.heappush(self._retry, (due, next(self._seq), delivery))
            self._cond.notify_all()
        if reason is None:
            self.stats.add("retried", reason=outcome.reason)
            return
        self._give_up(delivery, f"{reason}; last error: {outcome.reason}")

    def _give_up(self, delivery: Delivery, reason: str) -> None:
        result: Result = Dropped(reason)
        with capture_internal_exceptions():
            result = self._on_give_up(self.backend, delivery, reason)
        delivery.ticket.settle(self.backend.name, result)

    # -- shutdown -------------------------------------------------------------------------------

    def begin_close(self, close_by: float) -> None:
        """Stop taking new events; deliver what is queued until ``close_by`` (monotonic)."""
        with self._cond:
            self._closing = True
            self._close_by = close_by
            self._cond.notify_all()

    def join(self, close_by: float) -> None:
        """Wait for the threads until ``close_by``, then give up on whatever is left."""
        for thread in list(self._threads):
            thread.join(max(0.0, close_by - time.monotonic()))
        with self._cond:
            self._abort = True
            leftovers = list(self._ready) + [item[2] for item in self._retry] + list(self._sending)
            self._ready.clear()
            self._retry.clear()
            self._cond.notify_all()
        for delivery in leftovers:
            self._give_up(delivery, "shutdown budget exhausted")

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until nothing is queued, retrying or being sent."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._ready or self._retry or self._sending), timeout
            )

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(self.queued())
