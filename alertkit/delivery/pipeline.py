"""The delivery pipeline, top to bottom: intake -> policy -> fan-out -> per-backend workers.

* **Intake** (caller thread): :meth:`Pipeline.submit` appends a capture to a bounded deque and wakes
  the policy thread. No lock, no I/O, no formatting; a full intake drops and counts.
* **Policy** (one thread): builds the :class:`~alertkit.model.event.Envelope` from the capture, runs the
  processors (scrubbing, limits, sampling ... each may drop the event) once, so every backend sees
  the same event, then routes it by kind and ``min_level``.
* **Delivery** (:mod:`alertkit.delivery.worker`): one bounded queue and worker thread(s) per backend.

**Synchronous mode** is for processes where threads cannot run (uWSGI without
``--enable-threads``): queueing into a thread that never runs would lose every event silently.
:meth:`Pipeline.submit` then does the same steps on the caller's thread (build, processors,
route, one ``send`` per backend, with the client's short network timeout); an event the single
attempt does not settle is given up at once (spooled, or dropped and counted), as no thread
would ever retry it. Nothing else changes: the same policy, outcomes, spool and counts.

Shutdown shares one time budget across all backends: the policy thread moves the intake to the
workers, the workers deliver, and in a small reserve at the end what is left is spooled (or, without
a spool, dropped and counted), each event exactly once; nothing alertkit runs counts anything after
it returns. See :meth:`Pipeline.shutdown`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from alertkit._forking import at_fork_in_child, renew_locks
from alertkit.backends.base import Backend
from alertkit.delivery.shutdown import (
    DROP_COST,
    RESERVE_FIXED,
    SPOOL_COST,
    ShutdownTally,
    join_until_reserve,
)
from alertkit.delivery.stats import BackendStats
from alertkit.delivery.worker import BackendWorker, Delivery, Ticket
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Dropped, Result, Skipped, Spooled
from alertkit.model.retry import RetryPolicy
from alertkit.policy import Processor

if TYPE_CHECKING:
    from concurrent.futures import Future

    from alertkit.delivery.spooling import BackendSpool
    from alertkit.policy.storm import StormControl
    from alertkit.spool.store import Spool

log = logging.getLogger("alertkit.pipeline")

Capture = Callable[[], "Envelope | None"]
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
        synchronous: bool = False,
    ) -> None:
        self.queue_size = queue_size
        self.synchronous = synchronous
        self.processors: list[Processor] = list(processors)
        # Storm control only changes what storm-controlled backends (those that message people)
        # receive; without one it would be pure cost on every event.
        self.storm = storm if any(b.storm_controlled for b in backends) else None
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
                from alertkit.delivery.spooling import BackendSpool

                link = BackendSpool(spool, backend.name, worker.stats)
                worker.spool = link
                self._links[backend.name] = link
            self.workers.append(worker)
        self._reset()
        _prepare_imports(self.workers)
        _live_pipelines.add(self)
        for worker in self.workers:  # replay what an earlier run left in the spool
            if synchronous:
                break  # no thread would run it: `alertkit spool replay` sends it
            pending = self._links.get(worker.backend.name)
            if pending is not None and pending.has_pending():
                worker.start()

    def _reset(self) -> None:
        # A capture alone, or (capture, future) when someone waits for the results: most events
        # (the handler's) need no tuple, one container fewer per queued event for the GC to scan.
        self._intake: deque[Capture | tuple[Capture, Future[Results]]] = deque()
        self._wakeup = threading.Event()
        # Whether a submit has set _wakeup since the policy thread last cleared it (cleared first,
        # then this: a submit in between finds it still True, and its capture is taken anyway).
        self._woken = False
        self._idle = threading.Condition(threading.Lock())
        self._count = threading.Lock()  # guards _in_flight; cheap, taken once per finished event
        self._in_flight = 0
        self._waiters = 0  # flush() calls waiting: only then does finishing notify
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = False  # intake refuses new events; the policy thread drains what it has
        # The policy thread runs and the intake is open (not synchronous): submit's short path.
        self._taking = False
        self._halt = False  # the policy thread takes no further batch (set under _idle)
        self._leftovers_taken = False  # shutdown has taken the intake's rest (set under _idle)
        self._shut = False  # shutdown has finished: flush() returns, nothing is counted any more
        self._settled_callback = self._settled  # one bound method, not one per event

    def after_fork(self) -> None:
        """In a forked child: start over with empty queues and fresh locks; threads restart on
        the next event."""
        self._reset()
        renew_locks(self.storm, self.intake)
        for worker in self.workers:
            worker.after_fork()

    # -- intake: the caller's thread ------------------------------------------------------------

    def submit(self, capture: Capture, future: Future[Results] | None = None) -> bool:
        """Hand a capture to the policy thread; False (and counted) if the intake is full or closed.

        In synchronous mode the caller's thread does the policy thread's and the workers' work
        itself instead: build, route, one attempt per backend (see the module docs)."""
        intake = self._intake
        if self._taking and len(intake) < self.queue_size:  # the short path: every event takes it
            intake.append(capture if future is None else (capture, future))
            if not self._woken:  # an attribute read, not Event.is_set()
                self._woken = True
                self._wakeup.set()
            return True
        return self._submit_otherwise(capture, future)

    def _submit_otherwise(self, capture: Capture, future: Future[Results] | None) -> bool:
        """``submit`` with the policy thread not running (first event, after a fork), the intake
        full or closed, or synchronous mode."""
        intake = self._intake
        if self.synchronous:
            return self._submit_now(capture, future)
        if self._closed or len(intake) >= self.queue_size:
            self._drop_at_intake(future, "shut down" if self._closed else "intake queue full")
            return False
        intake.append(capture if future is None else (capture, future))
        if self._thread is None:
            self._start()
        if not self._woken:
            self._woken = True
            self._wakeup.set()
        return True

    def _submit_now(self, capture: Capture, future: Future[Results] | None) -> bool:
        if self._closed:
            self._drop_at_intake(future, "shut down")
            return False
        with self._count:
            self._in_flight += 1
        self._send_digests(flush_all=False)
        self._process_batch([capture if future is None else (capture, future)], self._send_now)
        return True

    def _drop_at_intake(self, future: Future[Results] | None, reason: str, count: int = 1) -> None:
        self.intake_dropped += count
        if count:
            self.intake.add("dropped", count, reason=reason)
        if future is not None and not future.done():
            future.set_result({"intake": Dropped(reason)})
        self._notify_drop(None, reason)

    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="alertkit-policy", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # at exit (Python 3.12.0-1): shutdown takes the intake
                    return
                self._thread = thread
                self._taking = not self._closed
                # The workers start with it: one first needed during the interpreter's exit
                # could not start on Python 3.12.0-3.12.1, and its events would wait for nothing.
                for worker in self.workers:
                    worker.start()

    # -- policy: one thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wakeup.wait(self.storm.next_due() if self.storm is not None else None)
            self._wakeup.clear()
            self._woken = False
            if not self._closed:  # at shutdown the digests are sent once, by shutdown()
                self._send_digests(flush_all=False)
            while True:
                batch = self._take_batch()
                if not batch:
                    break
                self._process_batch(batch, self._hand_over)
            if self._halt or (self._closed and not self._intake):
                with self._idle:
                    self._idle.notify_all()
                return

    def _take_batch(self) -> list[Capture | tuple[Capture, Future[Results]]]:
        """Up to 256 captures off the intake (fewer at shutdown, so that a halt is quick even
        with a slow processor), counted in flight; none once halted."""
        with self._idle:  # take a batch per lock round trip
            size = _CLOSING_BATCH if self._closed else _BATCH
            count = 0 if self._halt else min(len(self._intake), size)
            batch = [self._intake.popleft() for _ in range(count)]
            if count:
                with self._count:
                    self._in_flight += count
        return batch

    def _process_batch(
        self,
        batch: list[Capture | tuple[Capture, Future[Results]]],
        hand_over: Callable[[BackendWorker, list[Delivery]], None],
    ) -> None:
        """Build and route ``batch``; ``hand_over`` gets each worker's share of it at once."""
        # Deliveries are handed to each worker once per batch: one lock round trip and one
        # wake-up per backend instead of one per event. The events nobody waits on share one
        # ticket, settled as a whole.
        pending: dict[BackendWorker, list[Delivery]] = {}
        shared = _BatchTicket(self)
        for index, item in enumerate(batch):
            if self._halt and hand_over == self._hand_over:
                self._give_back(batch[index:])  # shutdown takes the rest from the intake
                break
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
                hand_over(worker, deliveries)

    def _give_back(self, rest: list[Capture | tuple[Capture, Future[Results]]]) -> None:
        """Return captures the halted policy thread had taken but not begun to the intake's
        front, where shutdown spools (or drops) them; too late for that, drop them counted."""
        with self._idle:
            with self._count:
                self._in_flight -= len(rest)
            if not self._leftovers_taken:
                self._intake.extendleft(reversed(rest))
                return
        self.intake_dropped += len(rest)
        for item in rest:
            self._drop_at_intake(item[1] if isinstance(item, tuple) else None, "shut down", 0)

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
                (self._send_now if self.synchronous else self._hand_over)(worker, [delivery])
            elif worker in pending:
                pending[worker].append(delivery)
            else:
                pending[worker] = [delivery]

    def _hand_over(self, worker: BackendWorker, deliveries: list[Delivery]) -> None:
        """Queue ``deliveries`` on ``worker``; what does not fit is dropped, counted, reported."""
        refused = worker.put_many(deliveries)
        if refused:
            self._refuse(worker, refused)

    def _send_now(self, worker: BackendWorker, deliveries: list[Delivery]) -> None:
        """Synchronous mode: one attempt on the caller's thread (see :meth:`submit`)."""
        refused = worker.send_now(deliveries)
        if refused:
            self._refuse(worker, refused)

    def _refuse(self, worker: BackendWorker, refused: list[Delivery]) -> None:
        """``worker`` took none of ``refused`` (queue full, or shutting down): dropped, counted,
        reported."""
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
        if backend.storm_controlled:
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

    def pending(self) -> int:
        """Events accepted and not yet settled (in the intake or in flight to the backends)."""
        return len(self._intake) + self._in_flight

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted event has a final result; True if that happened in time."""
        for worker in self.workers:  # partial batches need not wait for more events now
            worker.hurry(True)
        try:
            with self._idle:
                self._waiters += 1
                try:
                    return self._idle.wait_for(
                        lambda: self._shut or (not self._intake and self._in_flight == 0), timeout
                    ) and not (self._intake or self._in_flight)
                finally:
                    self._waiters -= 1
        finally:
            for worker in self.workers:
                worker.hurry(False)

    def settle_time(self) -> float:
        """The longest an accepted event can take to get its final result: the retry deadline."""
        return max((w.policy.deadline for w in self.workers), default=0.0) + 1.0

    def shutdown(self, timeout: float) -> dict[str, int]:
        """Deliver what was accepted within ``timeout`` seconds in all, then give up on the rest.

        Every accepted event ends exactly once: delivered, spooled or dropped with a reason. The
        policy thread moves the intake to the workers and the workers deliver until the budget
        less a small reserve; in the reserve, what is left (still in the intake, queued, or being
        sent) is spooled when there is a spool, else dropped and counted; nothing is counted
        after this returns. Every wait is bounded by the budget.

        Returns the number of events given up per backend during shutdown.
        """
        tally = ShutdownTally({w.backend.name: w.stats for w in self.workers}, self.intake)
        timeout = max(0.0, timeout)
        close_by = tally.started + timeout
        self._taking = False
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._wakeup.set()
            self._join_until_reserve([thread], close_by)
            with self._idle:  # from here on the intake is ours alone
                self._halt = True
            self._wakeup.set()
            thread.join(max(0.0, min(_HALT_WAIT, close_by - time.monotonic())))
        self._take_leftovers(close_by - RESERVE_FIXED)
        with capture_internal_exceptions():
            self._send_digests(flush_all=True)
        for worker in self.workers:  # no retry is scheduled past the budget
            worker.begin_close(close_by - RESERVE_FIXED)
        self._join_until_reserve([t for w in self.workers for t in w.threads()], close_by)
        for worker in self.workers:
            worker.join(time.monotonic())  # give up on what is left: spool it or drop it
        for worker in self.workers:
            with capture_internal_exceptions():
                worker.backend.close()
        if self.spool is not None:
            with capture_internal_exceptions():
                self.spool.close()
        with self._idle:
            self._shut = True
            self._idle.notify_all()
        for worker in self.workers:
            worker.reap(max(0.0, close_by - time.monotonic()))
        return tally.finish(timeout)

    def _join_until_reserve(self, threads: list[threading.Thread], close_by: float) -> None:
        """Wait for ``threads`` until only the reserve for giving up on what waits is left."""
        join_until_reserve(
            threads,
            close_by,
            lambda: len(self._intake) + sum(w.queued() for w in self.workers),
            SPOOL_COST if self.spool is not None else DROP_COST,
        )

    def _take_leftovers(self, spool_by: float) -> None:
        """What the policy thread did not get to: spooled (built and routed as usual) when
        there is a spool and until ``spool_by``, the rest dropped and counted at the intake."""
        with self._idle:
            self._leftovers_taken = True
            leftovers = list(self._intake)
            self._intake.clear()
        if self.spool is not None:
            while leftovers and time.monotonic() < spool_by:
                batch, leftovers = leftovers[:_CLOSING_BATCH], leftovers[_CLOSING_BATCH:]
                with self._count:
                    self._in_flight += len(batch)
                self._process_batch(batch, self._spool_over)
        self.intake_dropped += len(leftovers)
        if leftovers:
            self.intake.add("dropped", len(leftovers), reason="shut down")
        for item in leftovers:
            self._drop_at_intake(item[1] if isinstance(item, tuple) else None, "shut down", 0)

    def _spool_over(self, worker: BackendWorker, deliveries: list[Delivery]) -> None:
        worker._give_up(deliveries, "shut down before it could be sent")

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


#: How long a halted policy thread gets to finish the batch in its hands.
_HALT_WAIT = 0.05
#: Captures the policy thread takes at a time; while shutting down, a few only.
_BATCH = 256
_CLOSING_BATCH = 8


def _prepare_imports(workers: Sequence[BackendWorker]) -> None:
    """Import now, on the thread building the client, what delivery will import: an import on a
    worker thread holds an import lock a ``fork()`` would leave held in the child forever."""
    import base64  # noqa: F401  (the scrubber's, for the first Basic credential it meets)

    from alertkit.backends._web import WebBackend

    "localhost".encode("idna")  # socket.getaddrinfo looks the idna codec up on first use
    if any(isinstance(w.backend, WebBackend) for w in workers):
        from alertkit.backends._http import prepare

        prepare()


_live_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pipeline in list(_live_pipelines):
        pipeline.after_fork()


at_fork_in_child(_after_fork_in_child)
