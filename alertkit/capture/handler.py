"""``AlertHandler``: the logging capture point. Cheap on the caller's thread, never raising.

On the caller's thread ``handle`` does only what keeps the event correct later: the formatted message
(the args may change after the call), the record's attributes the event needs and its ``extra``
fields (:class:`RecordCapture`), and a hand-off to the pipeline. The event is built from them on
the policy thread.
"""

from __future__ import annotations

import logging
import operator
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import msgspec

from alertkit._forking import at_fork_in_child, renew_locks
from alertkit.backends.base import Backend
from alertkit.capture import breadcrumbs, trace
from alertkit.capture.api import get_client
from alertkit.capture.breadcrumbs import (
    Entry,
    last_appended,
    process_trail,
    record_log,
    task_trail,
    writable,
)
from alertkit.capture.client import Client
from alertkit.capture.current import FINDERS, find_frame, get_current
from alertkit.capture.events import was_reported
from alertkit.capture.records import (
    IGNORED_LOGGERS,
    PLAIN_ATTRS,
    STEERING,
    extra_dict,
    extra_items,
    is_ignored,
    known_ignored,
    shape_by_size,
)
from alertkit.capture.request import ScopeContext, scope_for_record
from alertkit.capture.trace import traced
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.model.event import CodeLocation, Envelope
from alertkit.model.grouping import normalize
from alertkit.model.levels import level_from_number
from alertkit.model.stacktrace import (
    exception_type_name,
    format_exception_text,
    resolve_exc_info,
    safe_str,
)
from alertkit.model.values import to_json_safe

#: ``Handler.handle`` returns the record itself for a record no filter stopped from Python 3.12 on,
#: True before.
_RETURNS_RECORD = sys.version_info >= (3, 12)
_ERROR = logging.ERROR
_WIRE_LEVELS = {n: level_from_number(n) for n in (10, 20, 30, 40, 50)}
#: The record's attributes a capture keeps (:attr:`RecordCapture.fields`), read in one C call.
_FIELD_NAMES = (
    "name",
    "levelno",
    "created",
    "msg",
    "exc_info",
    "exc_text",
    "stack_info",
    "funcName",
    "pathname",
    "lineno",
)
_FIELDS = operator.itemgetter(*_FIELD_NAMES)
# Bound once. Python 3.11 calls a method of an imported name through a plain attribute look-up
# (the name might be a module's), which makes a new bound method object at every call: about
# 200 instructions each, three of them per logged event (and current.get: see get_current).
_ignored_known = known_ignored.get
_shape_of_size = shape_by_size.get
_own_task_trail = task_trail.get
__all__ = ["IGNORED_LOGGERS", "AlertHandler", "RecordCapture", "get_logger", "is_ignored"]


class RecordCapture(msgspec.Struct, gc=False):
    """What ``handle`` keeps of a log record for the policy thread, which builds the event from it.

    The attributes the event needs and the values of its ``extra`` fields, as they were when the
    handler saw the record (later handlers and filters may change it), each read in one C call;
    the extra dict is made on the policy thread. Untracked by the garbage collector
    (``gc=False``; nothing in it refers back to it), and so are the tuples once a collection has
    seen they hold plain values: a backlog of queued records adds nothing to the collector's
    passes. (A copy of the record's ``__dict__`` would be cheaper to make, but it holds the
    arguments tuple, so the collector tracks it until a full collection: in a burst of 20,000
    errors that cost more than it saved.)
    """

    client: Client
    message: str
    #: The record's attributes named in ``_FIELD_NAMES``, in that order.
    fields: tuple[Any, ...]
    #: The record's :func:`~alertkit.capture.records.extra_items`: the names, and the values.
    extra_names: tuple[str, ...] | None = None
    extra_values: Any = None
    incident_key: str | None = None
    scope: ScopeContext | None = None
    #: The trail's list when the record was captured, and its length then (see
    #: :meth:`~alertkit.capture.crumbs.Breadcrumbs.cut`): no copy on the caller's thread.
    crumbs: list[Entry] | None = None
    crumbs_end: int = 0

    def __call__(self) -> Envelope:
        """Build the event (WIRE.md section 1 mapping); runs on the policy thread."""
        client = self.client
        fields = self.fields
        name, levelno, created, template, exc_info, exc_text, stack_info = fields[:7]
        # Each value checked for the plain type a LogRecord has before anything is converted.
        if type(levelno) is not int:
            levelno = int(levelno if levelno is not None else logging.ERROR)
        level = _WIRE_LEVELS.get(levelno) or level_from_number(levelno)
        info = resolve_exc_info(exc_info) if exc_info else None
        logger_name = name if type(name) is str and name else str(name or "root")
        if type(created) is not float:
            created = float(created or time.time())
        classification = "log" if levelno < logging.WARNING else "issue"
        event = client.events.new(level, classification, logger_name, self.message, created)
        if info is not None:
            client.events.add_exception(event, info)
            event.event_type = exception_type_name(info[0])
            exc_text = format_exception_text(info)
        else:
            exc_text = str(exc_text) if exc_text else None
        if stack_info:
            exc_text = (exc_text + "\n" if exc_text else "") + str(stack_info)
        extra = extra_dict(self.extra_names, self.extra_values)
        scope = self.scope
        tags = dict(client.tags) if scope is None else {**client.tags, **scope.tags}
        key_text = self.incident_key
        links: Sequence[dict[str, str]] = ()
        images: Sequence[dict[str, str]] = ()
        fingerprint = None
        if extra and not extra.keys().isdisjoint(STEERING):
            steering = {k: extra.pop(k) for k in STEERING if k in extra}
            fingerprint = normalize(steering.get("fingerprint"))
            if isinstance(steering.get("tags"), dict):
                # dict.items: a subclass's own items() may raise
                tags.update({safe_str(k): safe_str(v) for k, v in dict.items(steering["tags"])})
            # Test for None, not truth: the values come from the application and __bool__ may
            # raise.
            for candidate in (steering.get("incident_key"), steering.get("dedup_key")):
                if not key_text and candidate is not None:
                    key_text = candidate if isinstance(candidate, str) else safe_str(candidate)
            if "links" in steering:
                links = _dict_list(steering["links"])
            if "images" in steering:
                images = _dict_list(steering["images"])
        envelope = Envelope(
            event=event,
            levelno=levelno,
            logger_name=logger_name,
            template=template if isinstance(template, str) else safe_str(template),
            # The extra dict is this event's own (made just now): no copy.
            details=to_json_safe(extra, copy=False) if extra else {},
            exc_text=exc_text,
            incident_key=key_text or None,
            links=links,
            images=images,
            tags=tags,
            created=created,
            fingerprint=fingerprint,
            code_location=_code_location(fields[7:]),
        )
        if self.crumbs is not None:
            client.breadcrumbs.attach(
                envelope, client.breadcrumbs.cut(self.crumbs, self.crumbs_end)
            )
        return envelope if scope is None else scope.apply(envelope, tags_win=False)


#: With this module imported, an event may be in a span (see :func:`~alertkit.capture.trace.traced`).
_TRACING = "opentelemetry.trace"


def _unformatted(record: logging.LogRecord) -> str:
    """The message of a record whose template fails to format: the arguments beside it."""
    return (
        f"{safe_str(record.msg)} (message arguments failed to format: "
        f"{to_json_safe(record.args)!r})"
    )


def _code_location(code: Any) -> CodeLocation | None:
    """The record's ``(funcName, pathname, lineno)`` when they have the types a record gives them."""
    if type(code) is tuple and len(code) == 3:
        function, path, line = code
        if type(function) is str and type(path) is str and type(line) is int:
            return CodeLocation(function, path, line)
    return None


def _dict_list(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list | tuple):
        return []
    return [
        {safe_str(k): safe_str(v) for k, v in dict.items(item)}  # not a subclass's own items()
        for item in value
        if isinstance(item, dict)
    ]


class AlertHandler(logging.Handler):
    """A logging handler that sends records at or above ``level`` as events; never blocks or raises.

    Args:
        client: the client to send through; default: a client made from ``backends`` and
            ``client_options`` if any are given, else the default client (``alertkit.init``).
        level: the lowest level sent (a number or a name such as ``"ERROR"``); default WARNING.
        backends: backend URLs for the handler's own client (handy in ``dictConfig``).
        incident_key: a fixed dedup key for every event of this handler.
        routing_key: shorthand for a PagerDuty backend with this key (Events v2 routing key or
            v1 service key); ``service_key`` and ``service_id`` (the seed ``pagerdutyapi``
            handler's dictConfig vocabulary) are accepted too. ``endpoint`` overrides the
            PagerDuty URL (tests, proxies).
        **client_options: passed to :class:`~alertkit.Client` for the handler's own client.

    Raises:
        TypeError: ``incident_key`` is not a string; ``endpoint`` without a routing key; both
            ``client`` and client options.
    """

    def __init__(
        self,
        client: Client | None = None,
        level: int | str = logging.WARNING,
        backends: Sequence[str | Backend] | None = None,
        incident_key: str | None = None,
        routing_key: str | None = None,
        service_key: str | None = None,
        service_id: str | None = None,
        endpoint: str | None = None,
        **client_options: Any,
    ) -> None:
        # Everything that can fail comes before ``logging.Handler.__init__``, which registers
        # the handler for ``logging.shutdown()`` at exit: a half-built one would fail again there.
        if incident_key is not None and not isinstance(incident_key, str):
            raise TypeError(
                f"AlertHandler: incident_key must be a string, not {type(incident_key).__name__}"
            )
        key = routing_key or service_key or service_id
        if key is not None:
            from alertkit.backends.pagerduty import PagerDutyBackend

            backends = [*(backends or ()), PagerDutyBackend(key, endpoint=endpoint)]
        elif endpoint is not None:
            raise TypeError("AlertHandler: endpoint= is only meaningful with a routing_key")
        if client is not None and (backends is not None or client_options):
            raise TypeError("AlertHandler: give either client= or client options, not both")
        self._owns_client = client is None and (backends is not None or bool(client_options))
        if client is None:
            if self._owns_client:
                client = Client(backends=backends, **client_options)
            else:
                client = get_client()
        try:
            super().__init__(level)  # a bad level raises before the handler is registered
        except Exception:
            if self._owns_client:
                client.shutdown(0)
            raise
        self.client = client  # (and the hand-off: see the property)
        self.incident_key = incident_key
        self.dropped = 0
        self._drop_lock = threading.Lock()
        self.setLevel(self.level)
        _handlers.add(self)

    @property
    def client(self) -> Client:
        """The client events go to; its ``submit_capture`` is looked up when this is set (a
        method replaced on the client afterwards is not seen)."""
        return self._client

    @client.setter
    def client(self, client: Client) -> None:
        self._client = client
        # Read once: an instance attribute that shadows the class's method is looked up the slow
        # way at every call (the client sets it: see Client.__init__).
        self._hand_off = client.submit_capture

    def setLevel(self, level: int | str) -> None:  # noqa: N802 (logging's name)
        """Set the lowest level sent as an event (``event_level``).

        With the client's breadcrumbs on, ``level`` still equals that number but lets
        :mod:`logging` hand the handler records from the breadcrumb level up, which become
        breadcrumbs only (see :class:`_Threshold`).
        """
        super().setLevel(level)
        self.event_level = int(self.level)
        crumbs = self.client.breadcrumbs
        if crumbs.max and crumbs.levelno < self.event_level:
            self.level = _Threshold(self.event_level, crumbs.levelno)

    def handle(self, record: logging.LogRecord, _filtered: bool = False) -> Any:  # noqa: PLR0915
        """Queue the record as an event (or a breadcrumb): what it needs read now, the rest on the
        policy thread. Returns what ``logging.Handler.handle`` returns.

        ``Handler.handle`` without the handler lock (``emit`` only appends to a thread-safe
        queue: serialising callers would cost every logging call for nothing), with ``emit``'s
        work written here rather than called: every logged event runs it, and a Python call
        costs about 400 instructions. One function on purpose. (``_filtered``: the filters
        have passed the record already.)
        """
        if self.filters and not _filtered:
            result = self.filter(record)
            if not result:
                return result
            if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter may replace it
                record = result
        handled = record if _RETURNS_RECORD else True
        try:
            # The record's own dict, read by key: an attribute look-up costs more (every event).
            attrs = record.__dict__
            name = attrs["name"]
            ignored = _ignored_known(name)  # (is_ignored's cache first: no call)
            if ignored or (ignored is None and is_ignored(name)):
                return handled
            levelno = attrs["levelno"]
            if levelno < self.event_level and isinstance(self.level, _Threshold):
                if levelno >= self.level.crumbs:  # below the events: a breadcrumb only
                    record_log(record)
                return handled
            try:  # the attributes as they are now: later handlers and filters may change them
                fields = _FIELDS(attrs)
            except KeyError:  # a record an application built or changed by hand
                fields = tuple(map(attrs.get, _FIELD_NAMES))
            exc_info = fields[4]
            if exc_info and was_reported(exc_info[1]):
                return handled  # an integration reported it already (Celery's own failure log line)
            try:  # now: the arguments may change after the call
                template = fields[3]
                if type(template) is str and type(record) is logging.LogRecord:
                    args = attrs["args"]  # record.getMessage() written out: every event asks
                    message = template % args if args else template
                else:  # a record class may have its own getMessage
                    message = record.getMessage()
            except Exception:
                message = _unformatted(record)
            frame = get_current()
            if frame is None and FINDERS:
                frame = find_frame()
            scope = None if frame is None else scope_for_record(record, message)
            client = self._client
            size = len(attrs)
            names = values = None
            if size > PLAIN_ATTRS:  # extra_items() written out for a known shape (see there)
                shape = _shape_of_size(size)
                try:
                    if shape:
                        names = shape[0]
                        values = shape[1](attrs)
                    else:
                        names, values = extra_items(attrs) or (None, None)
                except KeyError:
                    names, values = extra_items(attrs) or (None, None)
            # The trail this record joins; an error takes it as it is before: its list, whose
            # length is noted (the list only grows), so nothing is copied here.
            crumbs = client.breadcrumbs
            if not crumbs.max:
                trail = None
            elif (
                frame is None  # writable()'s thread case written out: every event asks
                and _own_task_trail() is None
                and ((aio := sys.modules.get("asyncio")) is None or aio._get_running_loop() is None)
            ):
                trail = process_trail
            else:
                trail = writable(frame)
            items = None if trail is None else trail.items
            read = items is not None and levelno >= _ERROR and crumbs.read
            capture: Any = RecordCapture(
                client,
                message,
                fields,
                names,
                values,
                self.incident_key,
                scope,
                items if read else None,  # (only if something reads it: Breadcrumbs.read_by)
                len(items) if read else 0,  # type: ignore[arg-type]
            )
            created = fields[2]
            if items is not None and (not items or items[-1][0] is not created):
                # The record's crumb, for later events, formatted already (as record_log appends
                # one, written out: every event asks).
                if len(items) >= 2 * breadcrumbs.capacity:
                    items = trail.room()  # type: ignore[union-attr]
                items.append((created, levelno, name, message, None, names, values))
                last_appended[0] = created
            if scope is not None:
                capture = traced(capture, scope)
            elif _TRACING in sys.modules:  # traced()'s no-span case written out: every event asks
                variable = trace.span_variable
                if variable is None or variable.get().get(trace.span_key) is not None:
                    capture = traced(capture, scope)
            if scope is not None and scope.hold(client, capture):
                return handled  # the request's escalation will carry it
            hand_off = self._hand_off  # (a local: called as a method, the look-up is slow)
            if not hand_off(capture):
                self._count_drop()
        except Exception as exc:  # never into the application
            self._count_drop()
            report_internal_error(exc)
        return handled

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record, as :meth:`handle` does once the filters have passed it (the work is
        written there, in the frame ``logging`` calls)."""
        AlertHandler.handle(self, record, True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass with an ``emit`` of its own gets a ``handle`` that calls it, as
        ``logging.Handler.handle`` would (its ``super().emit()`` queues the record)."""
        super().__init_subclass__(**kwargs)
        if "emit" in cls.__dict__ and "handle" not in cls.__dict__:
            cls.handle = _handle_through_emit  # type: ignore[method-assign,assignment]

    def _count_drop(self) -> None:
        with self._drop_lock:  # handle runs without the handler lock (see handle)
            self.dropped += 1

    def flush(self) -> None:
        """Return at once: delivery runs in the background (``client.flush(timeout)`` waits).

        ``logging`` calls this holding its module lock (``dictConfig``, ``logging.shutdown``);
        waiting there for delivery would stall, or deadlock with a worker needing that lock.
        """

    def close(self) -> None:
        """Detach without waiting for delivery (``dictConfig`` calls it holding the logging lock).

        A client the handler made itself retires: it delivers what it accepted in the
        background, then shuts down; at exit its shutdown budget bounds that (see
        :meth:`Client.retire`).
        """
        with capture_internal_exceptions():
            if self._owns_client:
                self.client.retire()
        super().close()


def _handle_through_emit(handler: AlertHandler, record: logging.LogRecord) -> Any:
    """``logging.Handler.handle`` without the handler lock, for a subclass with its own ``emit``."""
    result = handler.filter(record) if handler.filters else (record if _RETURNS_RECORD else True)
    if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter may replace it
        record = result
    if result:
        handler.emit(record)
    return result


class _Threshold(int):
    """An :class:`AlertHandler`'s level with breadcrumbs on: the event level as a number (it
    compares equal to it, prints and hashes as it), but ``record.levelno >= handler.level`` (the
    test :mod:`logging` makes before calling a handler) holds from the breadcrumb level up.

    For ``a >= b`` with ``b`` of a subclass of ``a``'s type, Python asks ``b.__le__(a)`` first.
    That ``__le__`` is the breadcrumb level's own bound ``int.__le__``: a C method-wrapper,
    which has no ``__get__`` and so is called as it is, ``crumbs <= a``, without a Python frame
    (a Python ``__le__`` cost every logging call about 1,300 instructions). Hence one subclass
    per breadcrumb level, made once.
    """

    crumbs: int

    def __new__(cls, level: int, crumbs: int) -> _Threshold:
        kind = _threshold_types.get(crumbs)
        if kind is None:
            crumbs = int(crumbs)
            namespace = {"__le__": crumbs.__le__, "crumbs": crumbs, "__slots__": ()}
            kind = _threshold_types[crumbs] = type(cls.__name__, (cls,), namespace)
        return super().__new__(kind, level)

    def __repr__(self) -> str:
        return int.__repr__(self)


_threshold_types: dict[int, type[_Threshold]] = {}
_handlers: weakref.WeakSet[AlertHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_handlers):
        renew_locks(handler)


at_fork_in_child(_after_fork_in_child)


def get_logger(
    name: str | None = None, level: int | str = logging.NOTSET, **client_options: Any
) -> logging.Logger:
    """A logger with exactly one :class:`AlertHandler` attached (repeated calls add no second one)."""
    logger = logging.getLogger(name)
    if level:
        logger.setLevel(level)
    if not any(isinstance(h, AlertHandler) for h in logger.handlers):
        logger.addHandler(AlertHandler(**client_options))
    return logger
