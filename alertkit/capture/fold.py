"""Folding a request's errors into its escalation: one failing request, one event.

A scope that escalates when it ends (``escalate_from``, which the web middleware sets) holds the
error events captured in it instead of sending them (:meth:`alertkit.capture.request.Scope.hold`). Its
escalation then carries them: the first is the headline, every one is in ``error_logs``. This
module builds that event from the held captures on the policy thread, and makes sure no error waits
long: a request still running :data:`MAX_HOLD` seconds after its first held error escalates then,
with its log so far (one daemon thread watches the deadlines of every scope).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from alertkit.capture.submit import Submitter
from alertkit.guard import capture_internal_exceptions
from alertkit.model.event import Envelope
from alertkit.model.requestlog import (
    ERROR_LOGS,
    SECTIONS,
    Trace,
    describe_entry,
    finish_snapshot,
    top_entry,
)
from alertkit.model.stacktrace import ExcInfo, format_exception_text, safe_str

if TYPE_CHECKING:
    from concurrent.futures import Future

    from alertkit.delivery.pipeline import Results

#: Seconds an error may wait in a scope for the escalation; then the scope escalates at once. Long
#: enough for a slow request to end and say its status, short enough to page before a worker
#: timeout (gunicorn's default is 30 s) kills a hung request.
MAX_HOLD = 10.0

#: ``eventType`` of the event that :func:`alertkit.capture.scope.escalate` sends.
ESCALATION_EVENT_TYPE = "request escalation"


class Scope(Protocol):
    """What a deadline needs of the scope it watches (:class:`alertkit.capture.request.Scope`)."""

    def hold_expired(self) -> None:
        """The first held error has waited :data:`MAX_HOLD` seconds."""
        ...


#: A capture waiting in its scope, with its future if someone waits for the results.
Held = tuple[Callable[[], "Envelope | None"], "Future[Results] | None"]


def build_headline(held: list[Held]) -> Envelope | None:
    """Build the held captures (policy thread); the first envelope is the headline. The others are
    already in ``error_logs``: building them only runs what their capture would have run anyway."""
    headline = None
    for capture, _ in held:
        with capture_internal_exceptions():
            envelope = capture()
            if headline is None and envelope is not None:
                headline = envelope
    return headline


def headline_text(envelope: Envelope) -> str:
    """``type: first line of the message``, as a pager shows an error event."""
    event = envelope.event
    lines = (event.event_message or "").strip().splitlines()
    first = lines[0] if lines else ""
    kind = event.event_type or ""
    if not first:
        return kind or "error"
    return first if not kind or first.startswith(kind) else f"{kind}: {first}"


def fold(envelope: Envelope, headline: Envelope) -> Envelope:
    """Give the escalation what made the headline error its own event: its details (a name the
    summary uses is kept as ``extra.<name>``), links, images, logger, user, tags, breadcrumbs,
    fingerprint and incident key (a key the application chose wins over the ``alert_id``)."""
    details = envelope.details
    for key, value in headline.details.items():
        details[f"extra.{key}" if key in details else key] = value
    envelope.links = headline.links
    envelope.images = headline.images
    envelope.logger_name = headline.logger_name
    envelope.tags = {**envelope.tags, **headline.tags}
    if headline.incident_key:
        envelope.incident_key = headline.incident_key
    if headline.event.event_user:
        envelope.event.event_user = headline.event.event_user
    if headline.breadcrumbs:
        envelope.breadcrumbs = headline.breadcrumbs
    if headline.fingerprint is not None:
        envelope.fingerprint = headline.fingerprint
    return envelope


class Snapshot(NamedTuple):
    """The request log as ``escalate`` found it on the caller's thread."""

    level: str
    log: dict[str, Any]
    traces: dict[tuple[str, str], Trace]
    elapsed: float


def escalation(
    client: Submitter,
    snap: Snapshot,
    held: list[Held],
    message: str | None,
    info: ExcInfo | None,
) -> tuple[Envelope, Envelope | None]:
    """Build the escalation event (policy thread) and the headline error it should carry.

    The message is ``message``, else a summary of the headline error, else of the log's most
    severe entry; the stack trace is ``info``'s, else the headline's. The caller folds the headline
    in (:func:`fold`) and applies the scope's context.
    """
    level, elapsed = snap.level, snap.elapsed
    headline = build_headline(held)
    request_log = finish_snapshot(snap.log, snap.traces)
    text = message
    if headline is not None:
        what = headline_text(headline)
        if text is None:
            text = f"Request escalated at {level.upper()}: {what}"
        elif info is None:  # an unhandled exception is the headline itself
            text = f"{text}: {what}"
    elif text is None:
        text = f"Request escalated at {level.upper()}"
        top = top_entry(request_log)
        if top is not None:
            text += f": {describe_entry(*top)}"
    event = client.events.new(level, "issue", ESCALATION_EVENT_TYPE, safe_str(text))
    exc_text = None
    if info is not None:
        client.events.add_exception(event, info)
        exc_text = format_exception_text(info)
    elif headline is not None:
        event.event_stacktrace = headline.event.event_stacktrace
        exc_text = headline.exc_text
    event.context_operation_time_millis = int(elapsed * 1000)
    errors = request_log.get(ERROR_LOGS) or {}
    details: dict[str, Any] = {
        "alert_id": request_log["alert_id"],
        "log_level": level,
        "time_elapsed": round(elapsed, 6),
        "entries": {name: len(request_log.get(name) or {}) for name in SECTIONS},
        "errors": [describe_entry(k, e) for k, e in list(errors.items())[:5]],
    }
    envelope = client.envelope_for(
        event,
        details=details,
        exc_text=exc_text,
        request_log=request_log,
        incident_key=request_log["alert_id"],
    )
    return envelope, headline


def pass_results(waiting: Future[Results], done: Future[Results]) -> None:
    """Settle a held event's future with the results of the escalation that carried it."""
    if not waiting.done():
        with capture_internal_exceptions():
            waiting.set_result(done.result())


class Deadlines:
    """Escalates scopes whose first held error has waited :data:`MAX_HOLD` seconds.

    One daemon thread for the process, started at the first deadline (and again after a fork), ended when no scope waits; it
    holds scopes weakly, so a finished request is not kept alive by its deadline.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, weakref.ref[Scope]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, scope: Scope, delay: float) -> None:
        """Call ``scope.hold_expired()`` in ``delay`` seconds (unless the scope is gone)."""
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._reset()
        with self._cond:
            entry = (time.monotonic() + delay, next(self._order), weakref.ref(scope))
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="alertkit-scope-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
                if due is None:  # nothing left: the next add() starts a new thread
                    self._thread = None
                    return
            scope = due()
            if scope is not None:
                with capture_internal_exceptions():
                    scope.hold_expired()

    def discard(self, scope: Scope) -> None:
        """``scope`` has ended: forget its deadline, and let the thread end when none is left
        (no alertkit thread outlives the requests and clients that needed it)."""
        with self._cond:
            kept = [e for e in self._heap if e[2]() not in (None, scope)]
            if len(kept) != len(self._heap):
                heapq.heapify(kept)
                self._heap = kept
                self._cond.notify()

    def _next_due(self) -> weakref.ref[Scope] | None:
        """Wait (under the condition) for the earliest deadline; None once there is none."""
        while self._heap:
            now = time.monotonic()
            if self._heap[0][0] <= now:
                return heapq.heappop(self._heap)[2]
            self._cond.wait(min(self._heap[0][0] - now, 60.0))
        return None


DEADLINES = Deadlines()


def expire_later(scope: Scope) -> None:
    """Give ``scope`` :data:`MAX_HOLD` seconds before its held errors escalate on their own."""
    DEADLINES.add(scope, MAX_HOLD)


def forget_deadline(scope: Scope) -> None:
    """``scope`` has ended; its deadline no longer matters."""
    DEADLINES.discard(scope)
