"""The per-request :class:`Scope`, the immutable context its events take, and the capture hooks.

:mod:`alertkit.capture.scope` is the public face (the functions over the current scope); this
module holds the object behind it. The current scope lives in a ContextVar read on the caller's
thread (one ``ContextVar.get()`` per capture): context variables do not follow an event to the
worker thread.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec

from alertkit.capture.current import (
    FINDERS,
    Frame,
    current_frame,
    find_frame,
    get_current,
    running_task,
)
from alertkit.capture.current import current as _current  # the scope, made or pending
from alertkit.capture.fold import (
    Held,
    Snapshot,
    escalation,
    expire_later,
    fold,
    forget_deadline,
    pass_results,
)
from alertkit.capture.submit import Submitter
from alertkit.capture.trace import traced
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.model.event import Envelope
from alertkit.model.grouping import normalize
from alertkit.model.levels import LEVEL_NUMBERS, level_from_number, normalize_level
from alertkit.model.requestlog import (
    MAX_RECORDED_ERRORS,
    RESERVED,
    SECTIONS,
    SERVICE_LOGS,
    RequestLog,
    Trace,
    finish_snapshot,
)
from alertkit.model.stacktrace import (
    ExcInfo,
    exception_type_name,
    format_exception_text,
    resolve_exc_info,
    safe_str,
)
from alertkit.model.values import to_json_safe

if TYPE_CHECKING:
    from concurrent.futures import Future

    from alertkit.delivery.pipeline import Results


def _tag_text(key: str, value: str) -> str:
    return f"{key}:{value}" if value else key


class ScopeContext(msgspec.Struct, frozen=True):
    """What an event captured in a scope takes from it. Immutable: a capture snapshots it on the
    caller's thread and the policy thread applies it, whatever the scope does in between."""

    tags: Mapping[str, str]
    user: str | None
    correlation_id: str
    url: str | None = None
    #: ``(trace_id, span_id)`` of the request's incoming W3C ``traceparent`` header, if any.
    trace: tuple[str, str] | None = None
    #: The grouping chosen for the scope's events (``scope.fingerprint``), unless they have one.
    fingerprint: tuple[str, ...] | None = None
    #: The scope whose escalation will carry this event: set only for an error captured in a
    #: scope that escalates when it ends (see :meth:`Scope.hold`).
    holder: Scope | None = None
    #: The event repeats what the scope's integration reports itself (:meth:`Scope.absorb`):
    #: ``hold`` swallows it.
    absorbed: bool = False

    def hold(
        self,
        client: Submitter,
        capture: Callable[[], Envelope | None],
        future: Future[Results] | None = None,
    ) -> bool:
        """Give the capture to the scope that will escalate it; False: send it now as usual."""
        holder = self.holder
        if holder is None:
            return False
        if self.absorbed:
            return client is holder.client  # reported by the scope's integration: drop it
        return holder.hold(client, capture, future)

    def apply(self, envelope: Envelope, *, tags_win: bool = True) -> Envelope:
        """Fill the event's user, correlation id and URL where unset, and merge the tags.

        ``tags_win``: the scope's tags override the envelope's (which are the client's); False when
        the envelope's tags were chosen for this one event and must win.
        """
        event = envelope.event
        if self.user is not None and not event.event_user:
            event.event_user = self.user
        if not event.context_cross_app_correlation_id:
            event.context_cross_app_correlation_id = self.correlation_id
        if self.url is not None and not event.context_url:
            event.context_url = self.url
        if self.fingerprint is not None and envelope.fingerprint is None:
            envelope.fingerprint = list(self.fingerprint)
        if self.tags:
            tags = {**envelope.tags, **self.tags} if tags_win else {**self.tags, **envelope.tags}
            envelope.tags = tags
            kept = [t for t in event.context_tags or () if t.partition(":")[0] not in self.tags]
            event.context_tags = kept + [_tag_text(k, tags[k]) for k in self.tags]
        return envelope


class Scope(Frame):
    """One request (or job): tags, a user, and a request log; a context manager.

    Made by :meth:`alertkit.Client.scope`. Entering makes it the current scope of this thread or
    asyncio task; leaving restores the previous one, records an escaping exception in
    ``error_logs``, ends the log and, with ``escalate_from``, escalates. A scope opened inside
    another inherits its tags and user (its own win) but keeps its own request log.
    """

    def __init__(
        self,
        client: Submitter,
        *,
        tags: Mapping[str, str] | None = None,
        user: str | None = None,
        escalate_from: str | int | None = None,
    ) -> None:
        self.client = client
        self.escalate_from = None if escalate_from is None else normalize_level(escalate_from)
        self._own_tags = dict(tags or {})
        self._own_user = user
        self._tags: dict[str, str] = dict(self._own_tags)
        self._user = user
        self._url: str | None = None
        self._trace: tuple[str, str] | None = None
        self._own_fingerprint: tuple[str, ...] | None = None
        self._fingerprint: tuple[str, ...] | None = None
        self.crumbs = None  # the breadcrumbs of the scope while entered, from its first crumb
        self.outer = self.task = None
        self._lock = threading.Lock()
        self._log = RequestLog()
        self._token: Token[Frame | None] | None = None
        # Errors captured while the scope is entered, waiting to be folded into its escalation.
        self._held: list[Held] = []
        self._holding = False
        self._absorbed: Absorbed | None = None
        # What the scope's events take from it, made when first read after a change: a request
        # that captures nothing (most of them) never builds one.
        self._context: ScopeContext | None = None
        self._holding_context: ScopeContext | None = None
        # A deadline watches the held errors (see hold()); only then is there one to forget.
        self._deadline = False

    def _publish(self) -> None:
        """The tags, user, URL or log changed: the next read of :attr:`context` rebuilds it."""
        self._context = None

    @property
    def context(self) -> ScopeContext:
        """The immutable context an event captured now takes (see :class:`ScopeContext`)."""
        context = self._context
        if context is None:
            tags = MappingProxyType(dict(self._tags))
            base = (tags, self._user, self._log.alert_id, self._url, self._trace, self._fingerprint)
            if self.escalate_from is not None:
                self._holding_context = ScopeContext(*base, holder=self)
            context = self._context = ScopeContext(*base)
        return context

    def _context_for(self, level: str) -> ScopeContext:
        """The context of an event at ``level``: the holding one for an error that will make this
        scope escalate when it ends (at or above ``error`` and ``escalate_from``)."""
        context = self.context
        held = self._holding_context
        if held is None or self.escalate_from is None:
            return context
        number = LEVEL_NUMBERS.get(level, logging.ERROR)
        if number < logging.ERROR or number < LEVEL_NUMBERS[self.escalate_from]:
            return context
        return held

    # -- identity --------------------------------------------------------------------------------

    @property
    def alert_id(self) -> str:
        """The request log's id (uuid4), also the correlation id of the scope's events."""
        return self._log.alert_id

    @property
    def level(self) -> str:
        """The highest level recorded so far (``info`` at the start)."""
        return self._log.level

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    @property
    def user(self) -> str | None:
        return self._user

    @property
    def url(self) -> str | None:
        """``contextURL`` of the scope's events (the middleware sets the request URL)."""
        return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        self._url = value
        self._publish()

    @property
    def trace(self) -> tuple[str, str] | None:
        """``(trace_id, span_id)`` for the scope's events when no span is active at capture (the
        middleware sets it from the request's ``traceparent``: :mod:`alertkit.capture.trace`)."""
        return self._trace

    @trace.setter
    def trace(self, value: tuple[str, str] | None) -> None:
        self._trace = value
        self._publish()

    @property
    def fingerprint(self) -> list[str] | None:
        """The grouping of the events captured from now on in this scope (storm control,
        PagerDuty's dedup key), unless an event brings its own; ``"{{ default }}"`` in it stands
        for alertkit's own grouping. A scope opened inside another inherits it."""
        return None if self._fingerprint is None else list(self._fingerprint)

    @fingerprint.setter
    def fingerprint(self, value: Sequence[str] | str | None) -> None:
        parts = normalize(value)
        if value is not None and parts is None:
            raise TypeError("scope.fingerprint must be a list of strings (or None)")
        self._fingerprint = self._own_fingerprint = None if parts is None else tuple(parts)
        self._publish()

    def set_tag(self, key: str, value: Any) -> None:
        """Tag every event captured from now on in this scope."""
        self._tags = {**self._tags, str(key): safe_str(value)}
        self._own_tags[str(key)] = safe_str(value)
        self._publish()

    def set_user(self, user: str | None) -> None:
        """Set ``eventUser`` of the events captured from now on in this scope."""
        self._user = self._own_user = None if user is None else safe_str(user)
        self._publish()

    # -- context manager ---------------------------------------------------------------------------

    def __enter__(self) -> Scope:
        if self._token is not None:
            raise RuntimeError("this scope is already entered; open a new one with client.scope()")
        outer = self.outer = current_frame()
        self._attach(_resolved(outer))
        self.crumbs = None  # its own breadcrumbs, from the first one recorded in it
        self.task = running_task()
        self._token = _current.set(self)
        return self

    def _attach(self, parent: Scope | None) -> None:
        """Begin as a scope opened inside ``parent``: inherit its tags, user and absorbed records,
        and hold errors for the escalation."""
        if parent is not None:
            self._tags = {**parent._tags, **self._own_tags}
            self._user = self._own_user if self._own_user is not None else parent._user
            self._trace = self._trace or parent._trace
            own = self._own_fingerprint
            self._fingerprint = own if own is not None else parent._fingerprint
            if self._absorbed is None:
                self._absorbed = parent._absorbed
            self._publish()
        with self._lock:
            self._holding = self.escalate_from is not None

    def set_start(self, start_time: float, start_clock: float) -> None:
        """The request began before its scope was made (:class:`PendingScope`): date the log
        from then (``time.time()`` and ``time.monotonic()`` at the start)."""
        with self._lock:
            self._log.start_time = start_time
            self._log._start_clock = start_clock

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            with capture_internal_exceptions():  # never replace the application's exception
                failure = exc if isinstance(exc, Exception) else None
                if failure is not None:
                    self.record_exception(failure)
                self.end()
                if self.escalate_from is not None:
                    self.escalate(from_level=self.escalate_from, exc_info=failure)
        finally:
            self._leave()

    def _leave(self) -> None:
        """Stop holding (send what no escalation carried) and restore the previous scope."""
        try:  # not capture_internal_exceptions(): a context manager costs every request
            self._release_held(stop=True)
            if self._deadline:
                forget_deadline(self)
        except Exception as exc:
            report_internal_error(exc)
        token, self._token = self._token, None
        restore_current(self, token)

    # -- what an integration reports itself ----------------------------------------------------

    def absorb(self, *, logger: str | None = None, exception: BaseException | None = None) -> None:
        """Drop log records that repeat what the integration running this scope reports itself.

        A framework logs the exception it turns into a 500 page ("Internal Server Error: /x" on
        ``django.request``, "Exception on /x" on Flask's app logger) after the integration has
        seen it; through :class:`~alertkit.AlertHandler` that record would be a second report of
        the same failure. Records of ``logger`` (and its children), and records carrying
        ``exception``, captured in this scope (or one opened inside it) for this scope's client
        are dropped.
        """
        with self._lock:
            absorbed = self._absorbed = self._absorbed or Absorbed()
        if logger is not None:
            absorbed.loggers = (*absorbed.loggers, logger)
        if exception is not None:
            absorbed.exceptions = (*absorbed.exceptions[-7:], exception)

    def _absorbs(self, record: logging.LogRecord) -> bool:
        absorbed = self._absorbed
        return absorbed is not None and absorbed.covers(record)

    # -- errors held for the escalation --------------------------------------------------------

    def hold(
        self,
        client: Submitter,
        capture: Callable[[], Envelope | None],
        future: Future[Results] | None = None,
    ) -> bool:
        """Keep an error's capture until this scope escalates, which then carries it.

        One failing request is then one event (one incident, one message) with the error as its
        headline and the request log attached, not the error and then the escalation. Only while
        the scope is entered, only for its own client (another client's event goes to other
        destinations), and at most ``MAX_RECORDED_ERRORS`` per request; otherwise False and the
        caller sends the event at once as usual.
        """
        if client is not self.client:
            return False
        with self._lock:
            if not self._holding or len(self._held) >= MAX_RECORDED_ERRORS:
                return False
            self._held.append((capture, future))
            first = len(self._held) == 1
        if first:
            self._deadline = True
            expire_later(self)
        return True

    def hold_expired(self) -> None:
        """The first held error has waited long enough (a slow or hung request, a long stream):
        escalate now with the log so far, or, if that is no escalation (the request already
        escalated at this level), send the held errors as they are."""
        with self._lock:
            if not self._held or self.escalate_from is None:
                return
        if self.escalate(from_level=self.escalate_from) is None:
            self._release_held()

    def _release_held(self, *, stop: bool = False) -> None:
        """Send the held events as they are (no escalation will carry them); ``stop``: hold no
        more."""
        with self._lock:
            held, self._held = self._held, []
            if stop:
                self._holding = False
        for capture, future in held:
            self.client.enqueue(capture, future)  # a refusal is counted and settles the future

    # -- the request log ---------------------------------------------------------------------------

    def start_logging(self) -> None:
        """Start the request log afresh (a new ``alert_id``); a scope starts one when made.

        Errors held for an escalation of the old log are sent as they are.
        """
        with self._lock:
            self._log = RequestLog()
        self._publish()
        self._release_held()

    def add_to_log(
        self,
        key: str,
        value: Any,
        tag: str | None = None,
        code: Any = None,
        message: str | None = None,
        level: str | int = "info",
        extras: dict[str, Any] | None = None,
    ) -> None:
        """Add (or update) the entry ``key`` in section ``tag``; see :func:`add_to_log`."""
        wire = normalize_level(level)
        section = check_place(str(key), tag)
        with self._lock:
            self._log.put(
                section, str(key), value, code=code, message=message, level=wire, extras=extras
            )

    def add_service_log(
        self,
        name: str,
        message: str | None,
        level: str | int = "info",
        url: str | None = None,
        code: Any = None,
    ) -> None:
        """Record a service call in one step (no timing)."""
        self.add_to_log(
            name,
            None,
            tag=SERVICE_LOGS,
            code=code,
            message=message,
            level=level,
            extras={"url": url},
        )

    def start_service_log(
        self,
        name: str,
        message: str | None,
        level: str | int = "info",
        url: str | None = None,
        code: Any = None,
    ) -> None:
        """Record the start of a call to service ``name`` (its ``start_time``)."""
        wire = normalize_level(level)
        with self._lock:
            self._log.start_service(str(name), message, wire, url, code)

    def stop_service_log(
        self,
        name: str,
        message: str | None = None,
        level: str | int | None = None,
        code: Any = None,
        error_trace: str | BaseException | None = None,
    ) -> None:
        """Record the end of the call: ``end_time``, ``time_elapsed`` and ``error_trace``.

        ``level`` defaults to ``error`` when an ``error_trace`` (text or exception) is given,
        else ``info``.
        """
        wire = normalize_level(
            level if level is not None else ("error" if error_trace is not None else "info")
        )
        with self._lock:
            self._log.stop_service(str(name), message, wire, code, error_trace)

    def end_logging(self) -> dict[str, Any]:
        """Set the end time and elapsed time; return the log (see :meth:`get_all_logs`)."""
        self.end()
        return self.get_all_logs()

    def end(self) -> None:
        """Set the end time and elapsed time, without rendering the log (a scope that ends
        without escalating, most requests, then costs no copy of its log)."""
        with self._lock:
            self._log.end()

    def get_all_logs(self) -> dict[str, Any]:
        """A JSON-safe copy of the request log, tracebacks rendered as text."""
        with self._lock:
            snapshot, traces = self._log.snapshot()
        return finish_snapshot(snapshot, traces)

    def record_exception(self, exc: BaseException | ExcInfo, level: str | int = "error") -> None:
        """Add ``exc`` to ``error_logs`` under its type name, its traceback rendered later.

        ``exc`` may be an exc_info tuple: its traceback is kept even when the exception's own is
        cleared meanwhile (Starlette clears it once its exception handler has answered).
        """
        error = exc[1] if isinstance(exc, tuple) else exc
        self._record_error(
            exception_type_name(type(error)), safe_str(error), normalize_level(level), exc
        )

    def _record_error(self, key: str, message: str, level: str, trace: Trace) -> None:
        with capture_internal_exceptions(), self._lock:
            self._log.record_error(key, message, level, trace)

    # -- sending -----------------------------------------------------------------------------------

    def escalate(
        self, message: str | None = None, from_level: str | int = "error", exc_info: Any = None
    ) -> Future[Results] | None:
        """Send the request log as one event when the request's level reaches ``from_level``.

        The event (``eventType`` ``"request escalation"``, the request's level, ``request_log`` on
        the envelope, ``alert_id`` as incident key) goes through the client's pipeline to every
        backend. A request escalates once per level: calling again sends nothing unless the level
        has risen since.

        Errors the scope held (:meth:`hold`) are folded in: the first one is the headline (its
        text ends the message; its stack trace, details, links, logger and own incident key
        become the escalation's), all of them are in ``error_logs``, and their futures get the
        escalation's results. One failing request is one event, not one per error plus one.

        Args:
            message: the event's message; default: a summary of the first held error, else of
                the most severe entry.
            from_level: the lowest request level that escalates.
            exc_info: an exception (or exc_info tuple) whose stack trace the event carries.

        Returns:
            The future of the delivery results, or None when nothing was sent.

        Raises:
            ValueError: unknown ``from_level``.
        """
        threshold = LEVEL_NUMBERS[normalize_level(from_level)]
        info = resolve_exc_info(exc_info) if exc_info is not None else None
        with self._lock:
            log = self._log
            level = log.level
            if LEVEL_NUMBERS[level] < threshold:
                return None
            if (
                log.escalated_at is not None
                and LEVEL_NUMBERS[level] <= LEVEL_NUMBERS[log.escalated_at]
            ):
                return None
            log.escalated_at = level
            snap = Snapshot(level, *log.snapshot(), log.elapsed())
            held, self._held = self._held, []
        context, client = self.context, self.client

        def capture() -> Envelope:
            # Runs on the policy thread, like the held captures it builds here.
            envelope, headline = escalation(client, snap, held, message, info)
            if headline is None:
                return context.apply(envelope)
            return context.apply(fold(envelope, headline), tags_win=False)

        future = self._send(capture)
        for _, waiting in held:
            if waiting is not None:
                future.add_done_callback(functools.partial(pass_results, waiting))
        return future

    def capture_exception(
        self, exc: BaseException | ExcInfo, details: Mapping[str, Any] | None = None
    ) -> Future[Results]:
        """Send ``exc`` (or an exc_info tuple) as an error event with the scope's context (not
        re-recorded in the log)."""
        info = resolve_exc_info(exc)
        context, client = self.context, self.client
        extra = dict(details or {})

        def capture() -> Envelope:
            event = client.create_new_app_event("error", exc_info=info)
            envelope = client.envelope_for(
                event,
                details=to_json_safe(extra),
                exc_text=format_exception_text(info) if info is not None else None,
            )
            return context.apply(envelope)

        return self._send(capture)

    def _send(self, capture: Callable[[], Envelope | None]) -> Future[Results]:
        """Queue a capture of this scope's own (never held) and return its results' future."""
        from concurrent.futures import Future  # imported when the client was made

        future: Future[Results] = Future()
        self.client.enqueue(traced(capture, self.context), future)
        return future

    def __repr__(self) -> str:
        return f"<Scope alert_id={self.alert_id} level={self.level} tags={self._tags!r}>"


class PendingScope(Frame):
    """A scope made only when something needs it: current like an entered scope, but until an
    event is captured in it, or ``alertkit.scope`` is used, or :meth:`resolve` is called, there
    is no :class:`Scope` at all.

    Current from its making until :meth:`leave`. Web integrations open one per request: most requests capture nothing and end well, and then
    cost no scope, no request log and no lock. A subclass says how to build the scope
    (:meth:`make`; the integration's request object is the pending scope itself, so a request is
    one object, freed as soon as it ends: no cycle for the collector to find). The scope is
    attached as if entered where the pending scope was, and left with it.
    """

    __slots__ = ("_token", "made")

    #: Builds the scope, called once when first needed: a subclass defines it as a method.
    make: Callable[[], Scope]

    def __init__(self) -> None:
        """Become the current scope of the thread or task (no :class:`Scope` is made yet)."""
        self.outer = current_frame()
        self.crumbs = None  # its own breadcrumbs, from the first one recorded in it
        self.task = running_task()
        self._token: Token[Any] | None = _current.set(self)
        #: The scope, once made (None until something needed it).
        self.made: Scope | None = None

    def resolve(self) -> Scope:
        """The scope, made (once, whichever thread asks first) when first needed."""
        scope = self.made
        if scope is None:
            # One lock for every pending scope: a scope is made at most once per request, and
            # reentrant because making one resolves its parent first.
            with _making:
                scope = self.made
                if scope is None:
                    scope = self.make()
                    scope._attach(_resolved(self.outer))
                    self.made = scope
        return scope

    def leave(self) -> None:
        """Leave the scope, if it was made, and restore the previous one; idempotent."""
        token, self._token = self._token, None
        if token is None:
            return
        scope = self.made
        if scope is not None:
            scope._leave()
        if token is not NOT_CURRENT:
            restore_current(self, token)


#: The token of a pending scope that was never made current here: its framework keeps its
#: request current in a context of its own (see ``alertkit.capture.current.FINDERS``).
NOT_CURRENT: Any = object()


def restore_current(left: Frame, token: Token[Any] | None) -> None:
    """After ``left`` is left: the current scope (and so its trail) from before it."""
    if token is not None:
        try:
            _current.reset(token)
        except ValueError:  # left in another context (a server that closes elsewhere)
            if _current.get() is left:
                _current.set(None)


_making = threading.RLock()


def _resolved(frame: Frame | None) -> Scope | None:
    """The scope behind a frame, made now if it is still pending."""
    if isinstance(frame, PendingScope):
        return frame.resolve()
    return frame  # type: ignore[return-value]  # (a Frame is a Scope or a PendingScope)


class Absorbed:
    """The records a scope's integration reports itself (see :meth:`Scope.absorb`)."""

    __slots__ = ("exceptions", "loggers")

    def __init__(self) -> None:
        self.loggers: tuple[str, ...] = ()
        self.exceptions: tuple[BaseException, ...] = ()

    def covers(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        if info and any(info[1] is exc for exc in self.exceptions):
            return True
        name = record.name
        return any(name == n or name.startswith(n + ".") for n in self.loggers)


def check_place(key: str, tag: str | None) -> str | None:
    if tag is None:
        if key in RESERVED:
            raise ValueError(
                f"add_to_log: {key!r} is a reserved key of the request log; "
                f"pass tag= to put it in a section"
            )
        return None
    if not isinstance(tag, str) or (tag in RESERVED and tag not in SECTIONS):
        raise ValueError(
            f"add_to_log: tag must be a section name such as {', '.join(SECTIONS)}; got {tag!r}"
        )
    return tag


# -- capture hooks: one ContextVar.get() on the caller's thread ------------------------------


def _usable(exc_info: Any) -> Trace:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        return exc_info
    return None


def scope_for_record(record: logging.LogRecord, message: str) -> ScopeContext | None:
    """The current scope's context for a log record; an error record enters ``error_logs`` (and
    gets the holding context when the scope's escalation will carry it)."""
    frame: Frame | None = get_current()  # current_frame() written out: every record asks
    if frame is None and FINDERS:
        frame = find_frame()
    scope = _resolved(frame)
    if scope is None:
        return None
    if scope._absorbed is not None and scope._absorbs(record):
        return msgspec.structs.replace(scope.context, holder=scope, absorbed=True)
    if record.levelno >= logging.ERROR:
        level = level_from_number(record.levelno)
        scope._record_error(record.name, message, level, _usable(record.exc_info))
        return scope._context_for(level)
    return scope.context


def scope_for_log(data: Mapping[str, Any], level: str, info: Any) -> ScopeContext | None:
    """The current scope's context for ``Client.log``; an error enters ``error_logs``."""
    scope = _resolved(current_frame())
    if scope is None:
        return None
    if LEVEL_NUMBERS[level] >= logging.ERROR:
        with capture_internal_exceptions():
            _record_log_error(scope, data, level, info)
        return scope._context_for(level)
    return scope.context


def _record_log_error(scope: Scope, data: Mapping[str, Any], level: str, info: Any) -> None:
    found = {
        name: value
        for name, value in ((safe_str(k).lower(), v) for k, v in data.items())
        if name in ("eventtype", "eventmessage")
    }
    trace = _usable(info)
    exc = trace if isinstance(trace, BaseException) else trace[1] if trace else None
    key = found.get("eventtype") or (exception_type_name(type(exc)) if exc else "log")
    text = found.get("eventmessage") or (safe_str(exc) if exc else "")
    scope._record_error(safe_str(key), safe_str(text), level, trace)


def scope_for_event(envelope: Envelope) -> ScopeContext | None:
    """The current scope's context for ``send_event_async``; an error enters ``error_logs``.

    Only application events (kind ``"event"``) belong to a scope: incident lifecycle messages
    (acknowledge, resolve, change) and metrics pass through untouched.
    """
    frame = current_frame()
    if frame is None or envelope.kind != "event":
        return None
    scope = _resolved(frame)
    if scope is None:
        return None
    event = envelope.event
    level = event.log_level if type(event.log_level) is str else "error"  # the app may set anything
    if LEVEL_NUMBERS.get(level, logging.ERROR) >= logging.ERROR:
        scope._record_error(
            event.event_type, event.event_message, level, event.event_stacktrace or None
        )
        return scope._context_for(level)
    return scope.context


def current_scope() -> Scope | None:
    """The scope of this thread or asyncio task (made now if it was pending), or None."""
    return _resolved(current_frame())


def set_current_scope(scope: Scope) -> None:
    """Make ``scope`` current in this context until another one is set (``start_logging``)."""
    _current.set(scope)
