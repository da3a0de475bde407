"""Breadcrumbs: what the program logged (and added) just before an error, carried by the error.

A *trail* is a bounded deque of the last records of one context. It hangs on the current scope
(:mod:`alertkit.capture.current`: every entered :class:`~alertkit.capture.request.Scope` and every
web request has its own, made at its first crumb), and an asyncio task gets its own, a copy of
the one it inherited, the first time it records one; threads outside any scope share the process
trail.

Cost on the caller's thread: a record becomes a small tuple of references (time, level, logger,
template, args, ``extra``) appended to the deque, nothing formatted. Only an error or fatal event
copies the trail (a tuple of at most ``max_breadcrumbs`` references), and the policy thread turns
the copy into dicts (:mod:`alertkit.capture.crumbs`), runs ``before_breadcrumb`` and hands them to
scrubbing and the size limits.

Memory per context: at most ``max_breadcrumbs`` entries (default 50), each a 6-item tuple
holding references to the record's template and arguments and to at most
:data:`MAX_DATA_KEYS` ``extra`` values; no traceback and no frame is kept.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Mapping
from contextvars import ContextVar
from itertools import islice
from typing import Any

from alertkit.capture.current import (
    FINDERS,
    Frame,
    current,
    current_frame,
    find_frame,
    running_task,
)
from alertkit.capture.records import STEERING, extra_fields, is_ignored
from alertkit.guard import report_internal_error
from alertkit.model.levels import level_number
from alertkit.model.stacktrace import safe_str

#: ``extra`` fields (or ``add_breadcrumb`` data keys) kept per breadcrumb.
MAX_DATA_KEYS = 20

#: What a crumb is on the caller's thread: ``(created, levelno, category, message or template,
#: args or None, data or None)``.
Entry = tuple[Any, Any, Any, Any, Any, Any]

# -- the trails ------------------------------------------------------------------------------------


class _Trail:
    """A deque of entries, the asyncio task it belongs to (None: a thread's or a frame's) and the
    frame it was made under (see :mod:`alertkit.capture.current`)."""

    __slots__ = ("frame", "items", "owner")

    def __init__(self, owner: object, frame: Frame | None, items: deque[Entry]) -> None:
        self.owner = owner
        self.frame = frame
        self.items = items


_capacity = 0  # the largest max_breadcrumbs of any client made; 0: nothing is recorded
_process = _Trail(None, None, deque(maxlen=0))
# An asyncio task's own trail, set in the task's context at its first crumb. It holds the frame it
# was made under, so a frame entered later in the task (or left) is not written through it.
_task_trail: ContextVar[_Trail | None] = ContextVar("alertkit_task_breadcrumbs", default=None)
_NONE: deque[Entry] = deque(maxlen=0)  # what a frame without a trail yet reads: never written


def reserve(capacity: int) -> None:
    """Make trails hold at least ``capacity`` entries (a client's ``max_breadcrumbs``)."""
    global _capacity
    if capacity > _capacity:
        _capacity = capacity
        _process.items = deque(_process.items, maxlen=capacity)


def _found(frame: Frame | None) -> _Trail | None:
    """The trail this context reads: its task's own made under ``frame``, else the frame's (None:
    the frame has none yet), else the process trail."""
    own = _task_trail.get()
    if own is not None and own.frame is frame:
        return own
    return _process if frame is None else frame.crumbs


def _writable() -> deque[Entry]:
    """The trail to record into: a frame's own is made at its first crumb; an asyncio task that
    did not make the current frame current gets a copy of the trail it inherited (its parent's,
    else the frame's or the process trail), so sibling tasks never mix."""
    frame = current.get()
    if frame is None and FINDERS:
        frame = find_frame()
    trail = _found(frame)
    task = running_task()
    if trail is not None and (task is None or trail.owner is task):
        return trail.items  # the context's own (or, in a thread, the one it was given)
    if trail is None and frame is not None and (task is None or frame.task is task):
        trail = frame.crumbs = _Trail(frame.task, frame, deque((), _capacity))  # noqa: RUF037 (maxlen= is twice the cost)
        return trail.items  # the frame's first crumb
    parent = _NONE if trail is None else trail.items
    trail = _Trail(task, frame, deque(parent, parent.maxlen or _capacity))
    _task_trail.set(trail)
    return trail.items


def record(entry: Entry) -> None:
    """Append one entry to the current trail (nothing when no client keeps breadcrumbs)."""
    if _capacity:
        _writable().append(entry)


_UNREAD: Any = object()  # record_log's ``extra`` when the caller has not read it


def record_log(
    record_: logging.LogRecord,
    message: str | None = None,
    extra: dict[str, Any] | None = _UNREAD,
) -> None:
    """Append a log record: references only, formatted later. ``message``: the record already
    formatted (an event's own record), which then needs no arguments. ``extra``: the record's
    :func:`~alertkit.capture.records.extra_fields`, when the caller has them already (an
    event's record: read once for both); the crumb may share that dict, which nobody changes.
    A record the previous entry already holds (two handlers of one logger tree) is not added
    twice."""
    if not _capacity:
        return
    items = _writable()
    attrs = record_.__dict__
    created = attrs.get("created")
    if items and items[-1][0] is created:  # the same record object: the same float object
        return
    if extra is _UNREAD:
        extra = extra_fields(attrs)
    if extra is not None and (len(extra) > MAX_DATA_KEYS or not extra.keys().isdisjoint(STEERING)):
        selected = ((k, v) for k, v in extra.items() if k not in STEERING)
        extra = dict(islice(selected, MAX_DATA_KEYS))
    if message is None:
        template, args = attrs.get("msg"), attrs.get("args")
    else:
        template, args = message, None
    items.append((created, attrs.get("levelno"), attrs.get("name"), template, args, extra))


def current_items() -> deque[Entry]:
    """The current trail itself (read only: append through :func:`record`)."""
    trail = _found(current_frame())
    return _NONE if trail is None else trail.items


def current_entries() -> tuple[Entry, ...]:
    """A copy of the current trail, oldest first (one C-level copy, safe against other threads)."""
    return tuple(current_items())


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
    if not _capacity:
        return
    kept = None
    if data is not None:
        try:
            kept = dict(islice(dict.items(dict(data)), MAX_DATA_KEYS))
        except Exception:  # an application's mapping that fails to copy
            kept = {"data": safe_str(data)}
    record((time.time(), levelno, category, message, None, kept))


class BreadcrumbHandler(logging.Handler):
    """A handler that only records breadcrumbs: ``alertkit.init`` puts one on the root logger, so
    that records of loggers without an :class:`~alertkit.AlertHandler` become crumbs too."""

    def handle(self, record: logging.LogRecord) -> Any:
        """No handler lock: recording appends to a deque, which is thread-safe."""
        if not self.filters or self.filter(record):
            self.emit(record)
            return record if sys.version_info >= (3, 12) else True
        return False

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
