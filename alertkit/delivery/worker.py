"""Delivery to one backend: a bounded queue, its worker threads, and the retry loop.

Each backend gets its own :class:`BackendWorker` (a bulkhead), so a hanging SMTP server cannot delay
a PagerDuty page. A worker thread repeatedly takes the next batch — new events first (in capture
order for an ordered backend), then retries that are due, then events replayed from the spool —
waits for the backend's rate limit, calls ``backend.send`` and acts on each outcome:

* ``Delivered`` / ``Rejected`` settle the event;
* ``RetryLater`` schedules another attempt after the server's or the policy's delay, until the
  attempt cap or the deadline; then the event is given up: spooled if the client has a spool,
  else dropped and counted.

A circuit breaker watches whole batches: after repeated failures the worker stops sending for a
cool-down (events wait, or go to the spool), then probes with one event.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import msgspec

from alertkit._forking import renew_locks
from alertkit.backends.base import Backend
from alertkit.delivery.circuit import CircuitBreaker, TokenBucket
from alertkit.delivery.stats import BackendStats
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.model.event import Envelope
from alertkit.model.outcomes import (
    Delivered,
    Dropped,
    Outcome,
    Rejected,
    Result,
    RetryLater,
    Spooled,
)
from alertkit.model.retry import RetryPolicy

log = logging.getLogger("alertkit.worker")


class Action(enum.Enum):
    """What a worker thread does next (:meth:`BackendWorker._take`)."""

    SEND = "send"  #: send the batch
    SPOOL = "spool"  #: the circuit is open: give the items to the spool
    EXPIRE = "expire"  #: the circuit is open: give up items past their deadline
    CLAIM = "claim"  #: replay a batch from the spool
    STOP = "stop"  #: the thread ends


#: One lock for every settlement: held for a flag, a dict insert and a decrement, it is never
#: contended for long, and a lock per event would be one more object for the GC per event.
_SETTLE_LOCK = threading.Lock()


class Ticket(msgspec.Struct, eq=False, gc=False):
    """Counts the deliveries of one event (with each backend's final result in ``results``) or
    of a whole policy batch of events nobody waits on (``results`` None, one ticket and one
    callback per batch instead of per event); fires ``on_done`` once all have answered.

    Tickets and deliveries are structs untracked by the garbage collector (nothing they hold
    refers back to them), so thousands of queued events do not slow down every collection.
    """

    remaining: int
    on_done: Callable[[Ticket], None]
    results: dict[str, Result] | None = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.remaining == 0 and self.results is not None:
            self.on_done(self)


class Delivery(msgspec.Struct, eq=False, gc=False):
    """One envelope on its way to one backend.

    ``born`` starts the per-event deadline: the capture time, or the claim time of a replay.
    ``spool_id`` is set for events replayed from the spool.
    """

    envelope: Envelope
    ticket: Ticket
    born: float
    spool_id: int | None = None
    attempt: int = 0
    settled: bool = False

    def settle(self, backend: str, result: Result) -> None:
        """Give this delivery its final result; a second one (a late answer after shutdown gave
        up on it) is ignored."""
        with _SETTLE_LOCK:
            done = self.settle_locked(backend, result)
        if done:
            self.ticket.on_done(self.ticket)

    def settle_locked(self, backend: str, result: Result) -> bool:
        """:meth:`settle` for a caller holding ``_SETTLE_LOCK`` (a whole batch under one lock);
        True when this was the ticket's last delivery: the caller then fires ``on_done``."""
        if self.settled:
            return False
        self.settled = True
        ticket = self.ticket
        if ticket.results is not None:
            ticket.results[backend] = result
        ticket.remaining -= 1
        return ticket.remaining == 0


def _renew_settle_lock() -> None:
    """In a forked child: a worker thread may have held it at the fork."""
    _SETTLE_LOCK._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_settle_lock)


class SpoolLink(Protocol):
    """The spool as one worker sees it (see :mod:`alertkit.delivery.spooling`)."""

    def claim(self, limit: int) -> list[Delivery]:
        """Deliveries replayed from the spool, oldest first (their tickets ack or release)."""

    def has_pending(self) -> bool:
        """Whether this backend may have spooled events waiting."""


#: Why shutdown gave up on an event: it was waiting or being sent when the budget ended, or its
#: next attempt was due after the budget (no wait for it).
BUDGET_RAN_OUT = "shutdown budget exhausted"
NOT_RETRIED = "not retried: the next attempt was due after the shutdown budget"

GiveUp = Callable[[Backend, Sequence[Delivery], str], Result]
SPOOL_RECHECK = 30.0

#: What :meth:`BackendWorker._take` returns: an action and the deliveries it is about.
Task = tuple[Action, list[Delivery]]
_STOP: Task = (Action.STOP, [])


class BackendWorker:
    """The queue and threads that deliver to one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        policy: RetryPolicy,
        queue_size: int,
        batch_size: int | None,
        threads: int,
        on_give_up: GiveUp,
        spool: SpoolLink | None = None,
    ) -> None:
        self.backend = backend
        self.policy = backend.retry or policy
        self.queue_size = queue_size
        self.batch_size = max(1, min(batch_size or backend.max_batch, backend.max_batch))
        self.thread_count = max(1, min(threads, backend.max_concurrency))
        # An ordered backend (PagerDuty: a resolve must not overtake its trigger) gets one thread
        # and sends nothing new while an earlier event waits for its retry.
        self.ordered = backend.ordered
        if self.ordered:
            self.thread_count = 1
        self.stats = BackendStats(backend.name)
        self.spool = spool
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
        policy = self.policy
        self.circuit = CircuitBreaker(
            policy.circuit_threshold, policy.circuit_cooldown, policy.circuit_max_cooldown
        )
        limit = self.backend.rate_limit
        self._bucket = TokenBucket(*limit) if limit else None
        self._spool_check_at = 0.0
        self._paused_until = 0.0

    def after_fork(self) -> None:
        """Forget the parent's queue and threads; the parent delivers what it had queued."""
        self._reset()
        renew_locks(self.stats, self.backend)

    # -- producer side (the pipeline's policy thread) ----------------------------------------------

    def put(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; False when the queue is full or the worker is shutting down."""
        return not self.put_many([delivery])

    def put_many(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Queue as many of ``deliveries`` as fit, in order; return those that did not."""
        with self._cond:
            if self._closing:
                return deliveries
            room = max(0, self.queue_size - len(self._ready) - len(self._retry))
            accepted, refused = deliveries[:room], deliveries[room:]
            if accepted:
                self._ready.extend(accepted)
                self._ensure_started()
                self._cond.notify(len(self._threads))
        if accepted:
            self.stats.add("enqueued", len(accepted))
        return refused

    def start(self) -> None:
        """Start the threads now (to replay a spool at start-up) rather than on the first event."""
        with self._cond:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self._threads:
            return
        for index in range(self.thread_count):
            thread = threading.Thread(
                target=self._run, name=f"alertkit-{self.backend.name}-{index}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # the interpreter is exiting: shutdown gives up on the queue
                break
            self._threads.append(thread)

    @property
    def closing(self) -> bool:
        """Whether shutdown has begun: new events are refused (``put_many``) however much room."""
        return self._closing

    def queued(self) -> int:
        """Events waiting: queued, scheduled for retry, or being sent."""
        with self._cond:
            return len(self._ready) + len(self._retry) + len(self._sending)

    # -- consumer side --------------------------------------------------------------------------

    def _take(self) -> Task:
        """The next thing to do; ``Action.STOP`` when the thread should end."""
        with self._cond:
            while True:
                if self._abort:
                    return _STOP
                now = time.monotonic()
                step: Task | float | None  # a task, or how long to wait (None: until notified)
                if not self.circuit.allows(now):
                    step = self._while_open(now)
                elif now < self._paused_until:  # the destination asked us to wait (Retry-After)
                    step = self._while_paused(now)
                else:
                    step = self._next_batch(now)
                if isinstance(step, tuple):
                    return step
                self._cond.wait(step)

    def _while_open(self, now: float) -> Task | float:
        """The circuit is open: spool or expire what waits, else how long to wait."""
        if self.spool is not None and (self._ready or self._retry):
            items = list(self._ready) + [entry[2] for entry in self._retry]
            self._ready.clear()
            self._retry.clear()
            return (Action.SPOOL, items)
        expired = self._expired()
        if expired:
            return (Action.EXPIRE, expired)
        reopen = self.circuit.wait_time(now) or 0.0
        if self._closing and (not (self._ready or self._retry) or now + reopen >= self._close_by):
            return _STOP  # nothing can go out within the shutdown budget
        wait = self.circuit.wait_time(now)
        wait = 0.05 if wait is None else wait
        oldest = [d.born for d in self._ready] + [e[2].born for e in self._retry]
        if oldest:
            expiry = min(oldest) + self.policy.deadline - time.time()
            wait = min(wait, max(0.01, expiry))
        return self._bounded(now, wait)

    def _while_paused(self, now: float) -> Task | float:
        if self._closing and self._paused_until >= self._close_by:
            return _STOP
        return self._bounded(now, self._paused_until - now)

    def _next_batch(self, now: float) -> Task | float | None:
        """A batch to send (new events first, then due retries), a spool claim, or how long to
        wait (None: until notified)."""
        size = 1 if self.circuit.is_probe() else self.batch_size
        batch: list[Delivery] = []
        if self._ready and not (self.ordered and self._retry):
            batch = [self._ready.popleft() for _ in range(min(size, len(self._ready)))]
        elif self._retry and self._retry[0][0] <= now:
            while self._retry and self._retry[0][0] <= now and len(batch) < size:
                batch.append(heapq.heappop(self._retry)[2])
        if batch:
            self.circuit.start_probe()
            self._sending.update(batch)
            return (Action.SEND, batch)
        if (
            self.spool is not None
            and not self._closing
            and not self._retry
            and now >= self._spool_check_at
        ):
            self._spool_check_at = now + SPOOL_RECHECK
            return (Action.CLAIM, [])
        if self._closing and (not self._retry or self._retry[0][0] >= self._close_by):
            return _STOP  # what is left cannot be retried within the shutdown budget
        timeout: float | None = None
        if self._retry:
            timeout = self._retry[0][0] - now
        if self.spool is not None and not self._closing:
            until_check = max(0.0, self._spool_check_at - now)
            timeout = until_check if timeout is None else min(timeout, until_check)
        if self._closing:
            remaining = self._close_by - now
            if remaining <= 0:
                return _STOP
            timeout = remaining if timeout is None else min(timeout, remaining)
        return timeout

    def _expired(self) -> list[Delivery]:
        """Remove and return queued deliveries past their deadline (while the circuit is open)."""
        cutoff = time.time() - self.policy.deadline
        expired = [d for d in self._ready if d.born < cutoff]
        expired += [entry[2] for entry in self._retry if entry[2].born < cutoff]
        if expired:
            gone = set(expired)
            self._ready = deque(d for d in self._ready if d not in gone)
            self._retry = [entry for entry in self._retry if entry[2] not in gone]
            heapq.heapify(self._retry)
        return expired

    def _bounded(self, now: float, wait: float) -> float:
        return max(0.0, min(wait, self._close_by - now)) if self._closing else wait

    def _run(self) -> None:
        while True:
            action, items = self._take()
            if action is Action.STOP:
                return
            with capture_internal_exceptions():
                if action is Action.SPOOL:
                    self._give_up(items, "circuit open")
                elif action is Action.EXPIRE:
                    self._give_up(
                        items,
                        f"deadline of {self.policy.deadline:g}s exceeded "
                        "while the circuit was open",
                    )
                elif action is Action.CLAIM:
                    self._claim_from_spool()
                else:
                    self._deliver(items)

    def _claim_from_spool(self) -> None:
        if self.spool is None or not self.spool.has_pending():
            return
        batch = self.spool.claim(self.batch_size)
        if not batch:
            return
        self.stats.add("replayed", len(batch))
        with self._cond:
            self._sending.update(batch)
            self._spool_check_at = 0.0  # more may be waiting: look again right after this batch
        self._deliver(batch)

    def _deliver(self, batch: list[Delivery]) -> None:
        self._wait_for_rate(len(batch))
        outcomes = self._send(batch)
        kinds = set(map(type, outcomes))  # one pass in C; usually {Delivered}
        if kinds == {Delivered}:
            self._delivered(batch, cast("Sequence[Delivered]", outcomes))
            return
        answered = any(not isinstance(o, RetryLater) for o in outcomes)
        hints = [o.delay for o in outcomes if isinstance(o, RetryLater) and o.delay is not None]
        closed = opened = False
        with self._cond:
            if self._abort:  # a late answer: shutdown already gave this batch up and counted it
                return
            now = time.monotonic()
            state = (self.circuit.state, self._paused_until)
            if hints and not answered:
                # Rate limited (429 with Retry-After): the destination is up and said when to come
                # back. Pause the whole backend that long instead of counting toward the circuit.
                pause = min(max(hints), self.policy.max_hint)
                self._paused_until = max(self._paused_until, now + pause)
            elif answered:
                if self.circuit.record_success():
                    closed = True
                    self._spool_check_at = 0.0
            elif self.circuit.record_failure(now):
                opened = True
            if (self.circuit.state, self._paused_until) != state:
                self._cond.notify_all()  # threads waiting on the circuit or a pause re-check
            # Settled outcomes leave the in-flight set together, before their results are set.
            self._sending.difference_update(
                d for d, o in zip(batch, outcomes, strict=True) if not isinstance(o, RetryLater)
            )
        # Logged after the lock is released: a logging call may wait for the logging lock, whose
        # holder (dictConfig, a handler's close) may be waiting for this lock.
        if closed:
            log.info("%s: circuit closed, destination answers again", self.backend.name)
        if opened:
            log.warning(
                "%s: circuit open for %.0fs after repeated failures",
                self.backend.name,
                self.circuit.cooldown,
            )
        delivered = sum(1 for o in outcomes if isinstance(o, Delivered))
        if delivered:
            self.stats.add("delivered", delivered)
        given_up: list[tuple[Delivery, str]] = []
        name = self.backend.name
        for delivery, outcome in zip(batch, outcomes, strict=True):
            try:  # inline rather than the guard's context manager: this runs once per event
                if type(outcome) is Delivered:  # the common case, settled right here
                    delivery.attempt += 1
                    delivery.settle(name, outcome)
                    continue
                reason = self._handle(delivery, outcome)
                if reason is not None:
                    given_up.append((delivery, reason))
            except Exception as exc:
                report_internal_error(exc)
        for reason in {r for _, r in given_up}:
            self._give_up([d for d, r in given_up if r == reason], reason)

    def _delivered(self, batch: list[Delivery], outcomes: Sequence[Delivered]) -> None:
        """The whole batch went through: the common case, settled in one pass under one lock."""
        with self._cond:
            if self._abort:  # a late answer: shutdown already gave this batch up and counted it
                return
            closed = self.circuit.record_success()
            if closed:
                self._spool_check_at = 0.0
                self._cond.notify_all()
            self._sending.difference_update(batch)
        if closed:  # logged outside the lock (see _deliver)
            log.info("%s: circuit closed, destination answers again", self.backend.name)
        self.stats.add("delivered", len(batch))
        done: list[Ticket] = []
        name = self.backend.name
        with _SETTLE_LOCK:
            for delivery, outcome in zip(batch, outcomes, strict=True):
                delivery.attempt += 1
                if delivery.settle_locked(name, outcome):
                    done.append(delivery.ticket)
        for ticket in done:
            try:
                ticket.on_done(ticket)
            except Exception as exc:  # a callback must not stop the others
                report_internal_error(exc)

    def _wait_for_rate(self, count: int) -> None:
        if self._bucket is None:
            return
        with self._cond:
            while not self._abort:
                wait = self._bucket.reserve(count, time.monotonic())
                if wait <= 0:
                    return
                self._cond.wait(wait)

    def _send(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        envelopes = [delivery.envelope for delivery in batch]
        try:
            outcomes = list(self.backend.send(envelopes))
        except Exception as exc:  # a backend bug must not kill the worker
            if len(batch) > 1:  # one bad envelope must not make its neighbours retry
                return self._send_alone(envelopes)
            return [self._raised(exc)]
        if len(outcomes) != len(batch):
            reason = f"backend returned {len(outcomes)} outcomes for {len(batch)} events"
            log.warning("%s: %s", self.backend.name, reason)
            outcomes = (outcomes + [RetryLater(reason)] * len(batch))[: len(batch)]
        return outcomes

    def _send_alone(self, envelopes: list[Envelope]) -> list[Outcome]:
        """The batch sent again one envelope at a time, after ``send`` raised for all of it: each
        envelope gets its own outcome, so the one that makes the backend raise (a value it cannot
        encode) no longer turns its neighbours into retries."""
        outcomes: list[Outcome] = []
        for envelope in envelopes:
            try:
                answer = list(self.backend.send([envelope]))
            except Exception as exc:
                outcomes.append(self._raised(exc))
                continue
            if len(answer) == 1:
                outcomes.append(answer[0])
            else:
                reason = f"backend returned {len(answer)} outcomes for 1 event"
                outcomes.append(RetryLater(reason))
        return outcomes

    def _raised(self, exc: Exception) -> Outcome:
        """The outcome of one envelope whose ``send`` raised: a value the backend cannot encode
        (TypeError, ValueError) is rejected, as no retry can help; anything else is retried."""
        reason = self.mask(f"{type(exc).__name__}: {exc}")
        log.warning("backend %s raised while sending: %s", self.backend.name, reason)
        if isinstance(exc, TypeError | ValueError | msgspec.EncodeError):
            return Rejected(f"cannot be sent: {reason}")
        return RetryLater(reason)

    def mask(self, text: str) -> str:
        return self.backend.mask(text)

    def _handle(self, delivery: Delivery, outcome: Outcome) -> str | None:
        """Settle or reschedule one delivery; returns a reason when it must be given up."""
        delivery.attempt += 1
        name = self.backend.name
        if isinstance(outcome, Delivered):  # counted once per batch by _deliver
            delivery.settle(name, outcome)
            return None
        if isinstance(outcome, Rejected):  # announced (rate-limited) by the stats
            self.stats.add("rejected", reason=outcome.reason)
            delivery.settle(name, outcome)
            return None
        self.stats.failed(outcome.reason)
        wait = self.policy.delay(delivery.attempt, outcome.delay)
        age = time.time() - delivery.born
        reason = self.policy.gives_up(delivery.attempt, age, wait)
        due = time.monotonic() + wait
        with self._cond:
            if self._abort:  # shutdown took it over between the answer and here
                return None
            self._sending.discard(delivery)
            if reason is None and self._closing and due > self._close_by:
                reason = NOT_RETRIED
            if reason is None:
                heapq.heappush(self._retry, (due, next(self._seq), delivery))
                self._cond.notify()  # a waiting thread may need to wake earlier for it
        if reason is None:
            self.stats.add("retried", reason=outcome.reason)
            return None
        return f"{reason}; last error: {outcome.reason}"

    def _give_up(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Hand what cannot be delivered now to the pipeline (spool or drop); a replayed event
        simply stays in the spool."""
        replayed = [d for d in deliveries if d.spool_id is not None]
        fresh = [d for d in deliveries if d.spool_id is None]
        name = self.backend.name
        for delivery in replayed:
            delivery.settle(name, Spooled(f"still failing: {reason}"))
        if replayed:
            with self._cond:
                self._spool_check_at = time.monotonic() + self.policy.max_backoff
        if not fresh:
            return
        result: Result = Dropped(reason)
        with capture_internal_exceptions():
            result = self._on_give_up(self.backend, fresh, reason)
        if isinstance(result, Spooled):  # try the spool again once the backoff has passed
            with self._cond:
                retry_at = time.monotonic() + self.policy.max_backoff
                self._spool_check_at = min(self._spool_check_at, retry_at)
        for delivery in fresh:
            delivery.settle(name, result)

    # -- shutdown -------------------------------------------------------------------------------

    def begin_close(self, close_by: float) -> None:
        """Stop taking new events; deliver what is queued until ``close_by`` (monotonic)."""
        with self._cond:
            self._closing = True
            self._close_by = close_by
            self._cond.notify_all()

    def join(self, close_by: float) -> None:
        """Wait for the threads until ``close_by``, then give up on whatever is left.

        From then on the worker counts nothing: a thread still inside ``backend.send`` finds
        ``_abort`` set when the answer comes, under the same lock that took its batch here.
        """
        for thread in list(self._threads):
            thread.join(max(0.0, close_by - time.monotonic()))
        with self._cond:
            self._abort = True
            now = time.monotonic()
            late = [item[2] for item in self._retry if item[0] > now]  # a retry not due yet
            leftovers = list(self._ready) + [item[2] for item in self._retry if item[0] <= now]
            leftovers += self._sending
            self._ready.clear()
            self._retry.clear()
            self._sending.clear()
            self._cond.notify_all()
        if late:
            self._give_up(late, NOT_RETRIED)
        if leftovers:
            self._give_up(leftovers, BUDGET_RAN_OUT)

    def threads(self) -> list[threading.Thread]:
        """The worker's threads (for a bounded join)."""
        with self._cond:
            return list(self._threads)

    def reap(self, timeout: float) -> None:
        """After :meth:`join` and ``backend.close()``: wait up to ``timeout`` for threads still
        inside ``backend.send`` (closing the backend usually ends that send at once)."""
        end = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))

    def snapshot(self) -> dict[str, Any]:
        result = self.stats.snapshot(self.queued())
        result["circuit"] = self.circuit.state
        result.update(self.backend.counters())
        return result
