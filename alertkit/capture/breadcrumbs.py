"""Breadcrumbs: what the program logged (and added) just before an error, carried by the error.

A *trail* is a bounded list of the last records of one context. It hangs on the current scope
(:mod:`alertkit.capture.current`: every entered :class:`~alertkit.capture.request.Scope` and every
web request has its own, made at its first crumb), and an asyncio task gets its own, a copy of
the one it inherited, the first time it records one; threads outside any scope share the process
trail.

Cost on the caller's thread: a record becomes a small tuple of references (time, level, logger,
template, args, the names and the values of its ``extra`` fields, side by side) appended to the
list, nothing formatted. An error or fatal event takes the trail by reference (its list and that
list's length: see :class:`_Trail`), and the policy thread turns the entries into dicts
(:mod:`alertkit.capture.crumbs`), runs ``before_breadcrumb`` and hands them to scrubbing and the
size limits.

Memory per context: at most twice ``max_breadcrumbs`` entries (default 50), each a 7-item tuple
holding references to the record's template and arguments and to its ``extra`` values (of which
a crumb keeps :data:`MAX_DATA_KEYS`); no traceback and no frame is kept.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from itertools import islice
from typing import Any

from alertkit.capture.current import FINDERS, Frame, current_frame, find_frame, get_current
from alertkit.capture.records import PLAIN_ATTRS, STEERING, extra_dict, extra_items, is_ignored
from alertkit.guard import report_internal_error
from alertkit.model.levels import level_number
from alertkit.model.stacktrace import safe_str

#: ``extra`` fields (or ``add_breadcrumb`` data keys) kept per breadcrumb.
MAX_DATA_KEYS = 20

#: What a crumb is on the caller's thread: ``(created, levelno, category, message or template,
#: args or None, data or None, values or None)``. A log record's data and values are its
#: :func:`~alertkit.capture.records.extra_items`, the names and the values side by side (a
#: tuple holding them both would stay tracked by the garbage collector), made into a dict only
#: if an event takes the crumb (:func:`crumb_data`); an application's crumb's data is a dict.
Entry = tuple[Any, Any, Any, Any, Any, Any, Any]

# -- the trails ------------------------------------------------------------------------------------


class _Trail:
    """The entries of one context, the asyncio task it belongs to (None: a thread's or a frame's)
    and the frame it was made under (see :mod:`alertkit.capture.current`).

    ``items`` is a list that only grows, replaced by its newest entries once it holds twice the
    capacity: a snapshot is a slice (a C copy), not a walk over a deque, at a cost of at most
    twice the capacity held. (Two threads recording into one shared trail at the moment it is
    replaced may lose one of their crumbs; a request's or a task's trail has one writer.)
    """

    __slots__ = ("frame", "items", "owner")

    def __init__(self, owner: object, frame: Frame | None, items: list[Entry]) -> None:
        self.owner = owner
        self.frame = frame
        self.items = items

    def room(self) -> list[Entry]:
        """The list to append one entry to (a new one, of the newest entries, when full)."""
        items = self.items
        if len(items) >= 2 * capacity:
            self.items = items = items[len(items) - capacity + 1 :]
        return items


#: The largest ``max_breadcrumbs`` of any client made (0: nothing is recorded). Read elsewhere,
#: written by :func:`reserve` only.
capacity = 0
#: The trail of threads outside any scope (read by a hot path that writes out :func:`writable`).
process_trail = _Trail(None, None, [])
# An asyncio task's own trail, set in the task's context at its first crumb. It holds the frame it
# was made under, so a frame entered later in the task (or left) is not written through it.
task_trail: ContextVar[_Trail | None] = ContextVar("alertkit_task_breadcrumbs", default=None)
_NONE: list[Entry] = []  # what a frame without a trail yet reads: never written
#: The ``created`` of the record whose crumb was appended last, by anyone (one slot, written in
#: place): a later handler of the same record, such as ``alertkit.init``'s recorder on the root
#: logger after an ``AlertHandler``, sees that it is there without finding the trail. The float
#: object is the record's own (no two live records share one), kept here so it is not reused.
last_appended: list[Any] = [None]


def reserve(entries: int) -> None:
    """Make trails hold at least ``entries`` entries (a client's ``max_breadcrumbs``)."""
    global capacity
    capacity = max(capacity, entries)


def found(frame: Frame | None) -> _Trail | None:
    """The trail a context under ``frame`` reads: its task's own made under ``frame``, else the
    frame's (None: the frame has none yet), else the process trail."""
    own = task_trail.get()
    if own is not None and own.frame is frame:
        return own
    return process_trail if frame is None else frame.crumbs


def writable(frame: Frame | None) -> _Trail:
    """The trail to record into under ``frame`` (the current frame): a frame's own is made at its
    first crumb; an asyncio task that did not make the frame current gets a copy of the trail it
    inherited (its parent's, else the frame's or the process trail), so sibling tasks never
    mix."""
    own = task_trail.get()  # found(), written out: every record asks
    trail = (
        own
        if own is not None and own.frame is frame
        else (process_trail if frame is None else frame.crumbs)
    )
    aio = sys.modules.get("asyncio")  # running_task(), written out
    task = None
    if aio is not None:
        loop = aio._get_running_loop()
        if loop is not None:
            task = aio.current_task(loop)
    if trail is not None and (task is None or trail.owner is task):
        return trail  # the context's own (or, in a thread, the one it was given)
    if trail is None and frame is not None and (task is None or frame.task is task):
        trail = frame.crumbs = _Trail(frame.task, frame, [])
        return trail  # the frame's first crumb
    parent = _NONE if trail is None else trail.items
    trail = _Trail(task, frame, parent[-capacity:])
    task_trail.set(trail)
    return trail


def record(entry: Entry) -> None:
    """Append one entry to the current trail (nothing when no client keeps breadcrumbs)."""
    if capacity:
        writable(current_frame()).room().append(entry)


def record_log(record_: logging.LogRecord) -> None:
    """Append a log record: references only, formatted later. A record the previous entry
    already holds (two handlers of one logger tree) is not added twice. (An event's own record
    is appended by :meth:`~alertkit.AlertHandler.handle`, which has its message and trail.)"""
    if not capacity:
        return
    frame = get_current()  # (current_frame() written out: every record asks)
    if frame is None and FINDERS:
        frame = find_frame()
    trail = writable(frame)
    items = trail.items
    attrs = record_.__dict__
    created = attrs.get("created")
    if items and items[-1][0] is created:  # the same record object: the same float object
        return
    names = values = None
    if len(attrs) > PLAIN_ATTRS:
        names, values = extra_items(attrs) or (None, None)
    if len(items) >= 2 * capacity:
        items = trail.room()
    levelno, name, template, args = (
        attrs.get("levelno"),
        attrs.get("name"),
        attrs.get("msg"),
        attrs.get("args"),
    )
    items.append((created, levelno, name, template, args, names, values))
    last_appended[0] = created


def _kept(extra: dict[str, Any]) -> dict[str, Any]:
    """What a crumb keeps of a record's ``extra`` fields: not those that steer delivery, and at
    most :data:`MAX_DATA_KEYS`; the same dict when that is all of it (the caller's, shared)."""
    if len(extra) > MAX_DATA_KEYS or not extra.keys().isdisjoint(STEERING):
        selected = ((k, v) for k, v in extra.items() if k not in STEERING)
        return dict(islice(selected, MAX_DATA_KEYS))
    return extra


def crumb_data(data: Any, values: Any) -> dict[str, Any] | None:
    """An entry's data as its crumb has it: a log record's extra fields (their names and values)
    made into a dict (on the policy thread, when an event takes the crumb) and :func:`_kept`; an
    application's as it is."""
    if type(data) is tuple:
        extra = extra_dict(data, values)
        return None if extra is None else _kept(extra)
    return data  # type: ignore[no-any-return]


def current_items() -> list[Entry]:
    """The current trail's list itself, which may hold up to twice the capacity (read only:
    append through :func:`record`; slice the newest)."""
    trail = found(current_frame())
    return _NONE if trail is None else trail.items


def current_entries(keep: int | None = None) -> tuple[Entry, ...]:
    """A copy of the newest ``keep`` entries of the current trail (default: the capacity), oldest
    first (a C-level slice, safe against other threads)."""
    return tuple(current_items()[-(keep or capacity or 1) :])


def add_breadcrumb(
    message: str,
    category: str | None = None,
    level: str | int = "info",
    data: Mapping[str, Any] | None = None,
) -> None:
    """Add a breadcrumb of the application's own to the current trail.

    The next error or fatal event captured in this context carries it (with the log records
    around it), oldest first.

    Args:
        message: what happened.
        category: a short name for the kind of crumb (``"auth"``, ``"http"``); default none.
        level: debug, info, warning, error, fatal (or a :mod:`logging` number).
        data: a few facts; the first :data:`MAX_DATA_KEYS` keys are kept (the values by
            reference, made JSON-safe, scrubbed and bounded when an event takes the crumb).

    Raises:
        ValueError: unknown ``level`` (a programming error, raised at once).
    """
    levelno = level_number(level)
    if not capacity:
        return
    kept = None
    if data is not None:
        try:
            kept = dict(islice(dict.items(dict(data)), MAX_DATA_KEYS))
        except Exception:  # an application's mapping that fails to copy
            kept = {"data": safe_str(data)}
    record((time.time(), levelno, category, message, None, kept, None))


class BreadcrumbHandler(logging.Handler):
    """A handler that only records breadcrumbs: ``alertkit.init`` puts one on the root logger, so
    that records of loggers without an :class:`~alertkit.AlertHandler` become crumbs too."""

    def handle(self, record: logging.LogRecord) -> Any:
        """No handler lock: recording appends to a list, which is thread-safe. A record whose
        crumb was appended last (an ``AlertHandler`` below took it) is not looked at again."""
        if self.filters and not self.filter(record):
            return False
        try:
            appended = record.created is last_appended[0]
        except Exception:  # a record an application built without a time: record_log copes
            appended = False
        if not appended:
            self.emit(record)
        return record if sys.version_info >= (3, 12) else True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not is_ignored(record.name):
                record_log(record)
        except Exception as exc:  # never into the application
            report_internal_error(exc)


_installed: BreadcrumbHandler | None = None


def install_logging(levelno: int | None) -> None:
    """Record the root logger's records from ``levelno`` up, replacing an earlier recorder; None
    (breadcrumbs off) only removes the earlier one."""
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        _installed = None
    if levelno is not None:
        _installed = BreadcrumbHandler(levelno)
        root.addHandler(_installed)
