"""The delivery pipeline, top to bottom: intake -> policy -> fan-out -> per-backend workers.

* **Intake** (caller thread): :meth:`Pipeline.submit` appends a capture to a bounded deque and wakes
  the policy thread. No lock, no I/O, no formatting; a full intake drops and counts.
* **Policy** (one thread): builds the :class:`~alertkit.models.Envelope` from the capture, runs the
  processors (scrubbing, limits, sampling ... each may drop the event) once, so every backend sees
  the same event, then routes it by kind and ``min_level``.
* **Delivery** (:mod:`alertkit.worker`): one bounded queue and worker thread(s) per backend.

Shutdown shares one time budget across all backends and reports what it had to give up on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from alertkit.announce import exit_summary
from alertkit.backends.base import Backend
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.models import Envelope
from alertkit.outcomes import Dropped, Result, Skipped, Spooled
from alertkit.retry import RetryPolicy
from alertkit.stats import BackendStats
from alertkit.worker import BackendWorker, Delivery, Ticket

if TYPE_CHECKING:
    from concurrent.futures import Future

    from alertkit.spool import Spool
    from alertkit.spooling import BackendSpool
    from alertkit.storm import StormControl

log = logging.getLogger("alertkit.pipeline")

Capture = Callable[[], "Envelope | None"]
Processor = Callable[[Envelope], "Envelope | None"]
Results = dict[str, Result]
DropCallback = Callable[[Envelope | None, str], None]


class Pipeline:
    """Moves captured events to every backend without ever blocking or raising into the caller."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        policy: RetryPolicy,
        queue_size: int,
        batch_size: int | None,
        threads: int,
        processors: Sequence[Processor] = (),
        storm: StormControl | None = None,
        spool: Spool | None = None,
        on_drop: DropCallback | None = None,
    ) -> None:
        self.queue_size = queue_size
        self.processors: list[Processor] = list(processors)
        # Storm control only changes what storm-controlled backends (those that message people)
        # receive; without one it would be pure cost on every event.
        self.storm = storm if any(getattr(b, "storm_controlled", False) for b in backends) else None
        self.spool = spool
        self.on_drop = on_drop
        self.intake_dropped = 0
        self.intake = BackendStats("intake")  # events dropped before any backend got them
        self.workers = []
        self._links: dict[str, BackendSpool] = {}
        for backend in backends:
            worker = BackendWorker(
                backend,
                policy=policy,
                queue_size=queue_size,
                batch_size=batch_size,
                threads=threads,
                on_give_up=self._give_up,
            )
            if spool is not None:
                from alertkit.spooling import BackendSpool

                link = BackendSpool(spool, backend.name, worker.stats)
                worker.spool = link
                self._links[backend.name] = link
            self.workers.append(worker)
        self._reset()
        _live_pipelines.add(self)
        for worker in self.workers:  # replay what an earlier run left in the spool
            pending = self._links.get(worker.backend.name)
            if pending is not None and pending.has_pending():
                worker.start()

    def _reset(self) -> None:
        # A capture alone, or (capture, future) when someone waits for the results: most events
        # (the handler's) need no tuple, one container fewer per queued event for the GC to scan.
        self._intake: deque[Capture | tuple[Capture, Future[Results]]] = deque()
        self._wakeup = threading.Event()
        self._idle = threading.Condition(threading.Lock())
        self._count = threading.Lock()  # guards _in_flight; cheap, taken once per finished event
        self._in_flight = 0
        self._waiters = 0  # flush() calls waiting: only then does finishing notify
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = False
        self._settled_callback = self._settled  # one bound method, not one per event

    def after_fork(self) -> None:
        """In a forked child: start over with empty queues; threads restart on the next event."""
        self._reset()
        for worker in self.workers:
            worker.after_fork()

    # -- intake: the caller's thread ------------------------------------------------------------

    def submit(self, capture: Capture, future: Future[Results] | None = None) -> bool:
        """Hand a capture to the policy thread; False (and counted) if the intake is full or closed."""
        if self._closed or len(self._intake) >= self.queue_size:
            self._drop_at_intake(future, "shut down" if self._closed else "intake queue full")
            return False
        self._intake.append(capture if future is None else (capture, future))
        if self._thread is None:
            self._start()
        if not self._wakeup.is_set():
            self._wakeup.set()
        return True

    def _drop_at_intake(self, future: Future[Results] | None, reason: str) -> None:
        self.intake_dropped += 1
        self.intake.add("dropped", reason=reason)
        if future is not None and not future.done():
            future.set_result({"intake": Dropped(reason)})
        self._notify_drop(None, reason)

    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="alertkit-policy", daemon=True)
                thread.start()
                self._thread = thread

    # -- policy: one thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wakeup.wait(self.storm.next_due() if self.storm is not None else None)
            self._wakeup.clear()
            self._send_digests(flush_all=self._closed)
            while True:
                with self._idle:  # take a batch per lock round trip
                    count = min(len(self._intake), 256)
                    if not count:
                        break
                    batch = [self._intake.popleft() for _ in range(count)]
                    with self._count:
                        self._in_flight += count
                # Deliveries are handed to each worker once per batch: one lock round trip and
                # one wake-up per backend instead of one per event. The events nobody waits on
                # share one ticket, settled as a whole.
                pending: dict[BackendWorker, list[Delivery]] = {}
                shared = _BatchTicket(self)
                for item in batch:
                    if isinstance(item, tuple):  # (capture, future): someone waits on it
                        capture, future = item
                    else:
                        capture, future = item, None
                    try:  # inline rather than the guard's context manager: once per event
                        self._process(capture, future, pending, shared)
                    except Exception as exc:
                        report_internal_error(exc)
                for worker, deliveries in pending.items():
                    with capture_internal_exceptions():
                        self._hand_over(worker, deliveries)
            if self._closed and not self._intake:
                with self._idle:
                    self._idle.notify_all()
                return

    def _send_digests(self, *, flush_all: bool) -> None:
        if self.storm is None:
            return
        for digest in self.storm.due_digests(flush_all=flush_all):
            with self._count:
                self._in_flight += 1
            with capture_internal_exceptions():
                self.route(digest, None)

    def _process(
        self,
        capture: Capture,
        future: Future[Results] | None,
        pending: dict[BackendWorker, list[Delivery]] | None = None,
        shared: _BatchTicket | None = None,
    ) -> None:
        envelope: Envelope | None = None
        try:
            envelope = capture()
            for processor in self.processors:
                if envelope is None:
                    break
                envelope = processor(envelope)
                if envelope is not None and envelope.typed:
                    envelope.typed = getattr(processor, "keeps_types", False)
            if envelope is not None and self.storm is not None:
                envelope = self.storm(envelope)
        except Exception as exc:
            report_internal_error(exc)
            self._finish(future, {"pipeline": Dropped(f"could not build the event: {exc!r}")})
            return
        if envelope is None:
            self._finish(future, {"pipeline": Skipped("filtered out")})
            return
        self.route(envelope, future, pending, shared)

    def route(
        self,
        envelope: Envelope,
        future: Future[Results] | None,
        pending: dict[BackendWorker, list[Delivery]] | None = None,
        shared: _BatchTicket | None = None,
    ) -> None:
        """Fan ``envelope`` out to every backend that takes its kind and level; with ``pending``
        the deliveries are collected there for :meth:`_hand_over`, else handed over at once;
        with ``shared`` an event nobody waits on joins the batch's ticket."""
        targets: list[BackendWorker] = []
        skipped: dict[str, Result] | None = None
        kind, levelno = envelope.kind, envelope.levelno
        unmarked = not (envelope.storm_suppressed or envelope.digest)
        for worker in self.workers:
            backend = worker.backend
            if unmarked and kind in backend.kinds and levelno >= backend.min_level:
                targets.append(worker)  # the usual case, decided without _skip_reason
                continue
            reason = self._skip_reason(backend, envelope)
            if reason is None:
                targets.append(worker)
            else:
                skipped = skipped or {}
                skipped[worker.backend.name] = Skipped(reason)
        if future is None and shared is not None and targets:
            ticket = shared.add(len(targets))  # nobody reads the results: counted per batch
        elif future is None:
            ticket = Ticket(len(targets), self._settled_callback)
        else:
            ticket = Ticket(
                len(targets),
                lambda t: self._finish(future, {**(skipped or {}), **(t.results or {})}),
            )
        for worker in targets:
            delivery = Delivery(envelope, ticket, envelope.created)
            if pending is None:
                self._hand_over(worker, [delivery])
            elif worker in pending:
                pending[worker].append(delivery)
            else:
                pending[worker] = [delivery]

    def _hand_over(self, worker: BackendWorker, deliveries: list[Delivery]) -> None:
        """Queue ``deliveries`` on ``worker``; what does not fit is dropped, counted, reported."""
        refused = worker.put_many(deliveries)
        if not refused:
            return
        reason = "shut down" if worker.closing else "queue full"
        worker.stats.add("dropped", len(refused), reason=reason)
        for delivery in refused:
            self._notify_drop(delivery.envelope, f"{worker.backend.name}: {reason}")
            delivery.settle(worker.backend.name, Dropped(reason))

    @staticmethod
    def _skip_reason(backend: Backend, envelope: Envelope) -> str | None:
        """Why ``backend`` does not get ``envelope``, or None if it does."""
        if envelope.kind not in backend.kinds:
            return f"{backend.name} does not take {envelope.kind!r} events"
        if envelope.levelno < backend.min_level:
            return "below min_level"
        if getattr(backend, "storm_controlled", False):
            if envelope.storm_suppressed:
                return "storm control: a repeat, counted in the coming digest"
        elif envelope.digest:
            return "storm digests are for storm-controlled backends only"
        return None

    def _settled(self, ticket: Ticket) -> None:
        self._finish(None, {})

    def _finish(self, future: Future[Results] | None, results: Results, events: int = 1) -> None:
        """``events`` have their final results (``results`` for the one with a ``future``)."""
        if future is not None and not future.done():
            try:
                future.set_result(results)
            except Exception as exc:  # InvalidStateError on a cancelled future
                report_internal_error(exc)
        with self._count:
            self._in_flight -= events
            idle = self._in_flight == 0
        if idle and self._waiters:
            with self._idle:
                self._idle.notify_all()

    def _give_up(self, backend: Backend, deliveries: Sequence[Delivery], reason: str) -> Result:
        """A worker cannot deliver these now: spool them if there is a spool, else drop them,
        counted, logged and passed to ``on_drop``."""
        link = self._links.get(backend.name)
        if link is not None:
            result = link.save(deliveries, reason)
            if isinstance(result, Spooled):
                return result
        else:
            worker = next(w for w in self.workers if w.backend is backend)
            worker.stats.add("dropped", len(deliveries), reason=reason)
        for delivery in deliveries:  # announced (rate-limited) by the stats, not once per event
            self._notify_drop(delivery.envelope, f"{backend.name}: {reason}")
        return Dropped(reason)

    def _notify_drop(self, envelope: Envelope | None, reason: str) -> None:
        if self.on_drop is not None:
            with capture_internal_exceptions():
                self.on_drop(envelope, reason)

    # -- flush and shutdown ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted event has a final result; True if that happened in time."""
        with self._idle:
            self._waiters += 1
            try:
                return self._idle.wait_for(
                    lambda: not self._intake and self._in_flight == 0, timeout
                )
            finally:
                self._waiters -= 1

    def shutdown(self, timeout: float) -> dict[str, int]:
        """Deliver what is queued within ``timeout`` seconds in all, then give up on the rest.

        Returns the number of events given up per backend during shutdown.
        """
        close_by = time.monotonic() + max(0.0, timeout)
        if self._thread is not None and self._thread.is_alive():
            self._closed = True
            self._wakeup.set()
            self._thread.join(max(0.0, close_by - time.monotonic()))
        self._closed = True
        self._send_digests(flush_all=True)

        def counts() -> dict[str, tuple[int, int]]:
            return {
                w.backend.name: (w.stats.count("dropped"), w.stats.count("spooled"))
                for w in self.workers
            }

        before = counts()
        for worker in self.workers:
            worker.begin_close(close_by)
        for worker in self.workers:
            worker.join(close_by)
        after = counts()
        for worker in self.workers:
            with capture_internal_exceptions():
                worker.backend.close()
        if self.spool is not None:
            with capture_internal_exceptions():
                self.spool.close()
        leftover = len(self._intake)
        if leftover:
            self.intake_dropped += leftover
            self.intake.add("dropped", leftover, reason="shutdown budget exhausted")
        lost = {name: after[name][0] - before[name][0] for name in after}
        kept = {name: after[name][1] - before[name][1] for name in after}
        for stats in [self.intake] + [w.stats for w in self.workers]:
            stats.announce()  # what the rate limit held back
        summary = exit_summary(
            {w.backend.name: w.stats for w in self.workers},
            self.intake,
            budget=timeout,
            elapsed=time.monotonic() - (close_by - max(0.0, timeout)),
        )
        if summary is not None:
            print(summary, file=sys.stderr)
        return {name: lost[name] + kept[name] for name in after if lost[name] or kept[name]}

    def stats(self) -> dict[str, dict[str, Any]]:
        result = {}
        for worker in self.workers:
            entry = worker.snapshot()
            link = self._links.get(worker.backend.name)
            if link is not None:
                entry.update(link.report())
            result[worker.backend.name] = entry
        return result


class _BatchTicket:
    """The ticket shared by the events of one policy batch that nobody waits on: it counts their
    deliveries and finishes those events together once every delivery has its result (one
    callback per batch instead of one ticket and one callback per event). Everything is added
    before the batch is handed to the workers, so the count cannot reach zero early."""

    __slots__ = ("_events", "_pipeline", "_ticket")

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._events = 0
        self._ticket: Ticket | None = None

    def add(self, deliveries: int) -> Ticket:
        """The shared ticket, counting one more event with ``deliveries`` deliveries."""
        ticket = self._ticket
        if ticket is None:
            ticket = self._ticket = Ticket(0, self._done, None)
        ticket.remaining += deliveries
        self._events += 1
        return ticket

    def _done(self, _: Ticket) -> None:
        self._pipeline._finish(None, {}, self._events)


_live_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pipeline in list(_live_pipelines):
        pipeline.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
