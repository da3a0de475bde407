"""Breadcrumbs: what the program logged (and added) just before an error, carried by the error.

A *trail* is a bounded deque of the last records of one context. It lives in a ContextVar, so a
request (every :class:`~alertkit.capture.request.Scope` starts its own) and an asyncio task (a
task gets its own trail, a copy of its parent's, the first time it records one) each have their
own; threads that have no trail of their own share the process trail.

Cost on the caller's thread: a record becomes a small tuple of references (time, level, logger,
template, args, ``extra``) appended to the deque, nothing formatted. Only an error or fatal event
copies the trail (a tuple of at most ``max_breadcrumbs`` references), and the policy thread turns
the copy into dicts, runs ``before_breadcrumb`` and hands them to scrubbing and the size limits.

Memory per context: at most ``max_breadcrumbs`` entries (default 50), each a 6-item tuple
holding references to the record's template and arguments and to at most
:data:`MAX_DATA_KEYS` ``extra`` values; no traceback and no frame is kept.
"""

from __future__ import annotations

import logging
import operator
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from itertools import islice
from typing import Any

from alertkit.model.event import Envelope
from alertkit.model.levels import level_from_number, level_number
from alertkit.model.stacktrace import safe_str
from alertkit.model.values import Bounds, to_json_safe

#: Breadcrumbs kept per context by default, and the lowest level recorded from logging.
DEFAULT_MAX_BREADCRUMBS = 50
DEFAULT_LEVEL = "info"
#: ``extra`` fields (or ``add_breadcrumb`` data keys) kept per breadcrumb.
MAX_DATA_KEYS = 20
#: Characters kept of a breadcrumb's message.
MAX_MESSAGE = 1000


class CrumbBounds(Bounds):
    """The bounds of one breadcrumb's ``data``: at most :data:`MAX_DATA_KEYS` keys, strings of
    512 characters, 4 levels, 4,096 characters in all (an unbounded trail is a known memory
    leak in other SDKs)."""

    max_string = 512
    max_items = MAX_DATA_KEYS
    max_depth = 4
    max_total = 4096


_CRUMB_BOUNDS = CrumbBounds()
_SECOND = operator.itemgetter(1)

#: What a crumb is on the caller's thread: ``(created, levelno, category, message or template,
#: args or None, data or None)``.
Entry = tuple[Any, Any, Any, Any, Any, Any]
#: ``before_breadcrumb(crumb, hint) -> crumb | None``.
BeforeBreadcrumb = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]

#: Loggers whose records are neither events nor breadcrumbs: alertkit's own, and the libraries
#: the backends use, so that a failing destination cannot feed on its own error reports.
IGNORED_LOGGERS: frozenset[str] = frozenset(
    {
        "alertkit",
        "urllib3",
        "requests",
        "redis",
        "http.client",
        "smtplib",
        "mail.log",
        "asyncio",
        "concurrent.futures",
    }
)
_ignored_cache: dict[str, bool] = {}

#: Attributes every LogRecord has; whatever else is in ``record.__dict__`` came from ``extra``.
_PLAIN_RECORD = logging.LogRecord("", 0, "", 0, "", (), None).__dict__
RECORD_ATTRS: frozenset[str] = frozenset(_PLAIN_RECORD) | {"message", "asctime", "taskName"}
PLAIN_ATTRS = len(_PLAIN_RECORD)
#: ``extra`` keys that steer delivery (the handler reads them) rather than describe the record.
STEERING = ("incident_key", "dedup_key", "links", "images", "tags", "fingerprint")


def is_ignored(name: str) -> bool:
    """True for the loggers in :data:`IGNORED_LOGGERS` and their children."""
    cached = _ignored_cache.get(name)
    if cached is None:
        root = name
        cached = False
        while root:
            if root in IGNORED_LOGGERS:
                cached = True
                break
            root = root.rpartition(".")[0]
        if len(_ignored_cache) < 10_000:
            _ignored_cache[name] = cached
    return cached


def extra_fields(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The ``extra`` fields of a record's ``__dict__``, in the order the application gave them."""
    if len(attrs) <= PLAIN_ATTRS:  # no more attributes than a plain record: no extra (most)
        return None
    extra = {k: attrs[k] for k in attrs if k not in RECORD_ATTRS and not k.startswith("_")}
    return extra or None


# -- the trails ------------------------------------------------------------------------------------


class _Trail:
    """A deque of entries and the asyncio task it belongs to (None: a thread's or a scope's)."""

    __slots__ = ("items", "owner")

    def __init__(self, owner: object, items: deque[Entry]) -> None:
        self.owner = owner
        self.items = items


_capacity = 0  # the largest max_breadcrumbs of any client made; 0: nothing is recorded
_process = _Trail(None, deque(maxlen=0))
_current: ContextVar[_Trail | None] = ContextVar("alertkit_breadcrumbs", default=None)


def reserve(capacity: int) -> None:
    """Make trails hold at least ``capacity`` entries (a client's ``max_breadcrumbs``)."""
    global _capacity
    if capacity > _capacity:
        _capacity = capacity
        _process.items = deque(_process.items, maxlen=capacity)


def _task() -> object:
    """The running asyncio task, or None (no event loop: asyncio need not even be imported)."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    loop = aio._get_running_loop()
    return None if loop is None else aio.current_task(loop)


def _writable() -> deque[Entry]:
    """The trail to record into: an asyncio task that has none of its own gets a copy of the one
    it inherited (its parent's, else the process trail), so sibling tasks never mix."""
    trail = _current.get()
    task = _task()
    if task is not None and (trail is None or trail.owner is not task):
        parent = (trail or _process).items
        trail = _Trail(task, deque(parent, maxlen=parent.maxlen or _capacity))
        _current.set(trail)
    return (trail or _process).items


def record(entry: Entry) -> None:
    """Append one entry to the current trail (nothing when no client keeps breadcrumbs)."""
    if _capacity:
        _writable().append(entry)


def record_log(record_: logging.LogRecord, message: str | None = None) -> None:
    """Append a log record: references only, formatted later. ``message``: the record already
    formatted (an event's own record), which then needs no arguments. A record the previous
    entry already holds (two handlers of one logger tree) is not added twice."""
    if not _capacity:
        return
    items = _writable()
    attrs = record_.__dict__
    created = attrs.get("created")
    if items and items[-1][0] is created:  # the same record object: the same float object
        return
    extra = extra_fields(attrs)
    if extra is not None:
        selected = ((k, v) for k, v in extra.items() if k not in STEERING)
        extra = dict(islice(selected, MAX_DATA_KEYS))
    if message is None:
        template, args = attrs.get("msg"), attrs.get("args")
    else:
        template, args = message, None
    items.append((created, attrs.get("levelno"), attrs.get("name"), template, args, extra))


def start_trail() -> Token[_Trail | None]:
    """Give the current context a new, empty trail (a scope's request); ``end_trail`` undoes it."""
    return _current.set(_Trail(_task(), deque(maxlen=_capacity)))


def end_trail(token: Token[_Trail | None]) -> None:
    """Restore the trail that was current before :func:`start_trail`."""
    try:
        _current.reset(token)
    except ValueError:  # ended in another context (a server that closes elsewhere)
        _current.set(None)


def current_entries() -> tuple[Entry, ...]:
    """A copy of the current trail, oldest first (one C-level copy, safe against other threads)."""
    trail = _current.get()
    return tuple((trail or _process).items)


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


# -- one client's settings: what it keeps, and how crumbs become dicts --------------------------


class Breadcrumbs:
    """A client's breadcrumb options: how many ride along, from which level, and its hook.

    Args:
        max_breadcrumbs: breadcrumbs per event (and kept per context); 0 turns them off.
        level: the lowest level recorded from logging (``add_breadcrumb`` takes any level).
        before_breadcrumb: ``before_breadcrumb(crumb, hint) -> crumb | None``, run on the policy
            thread when an event takes the crumb: return it (changed or not), or None to leave it
            out. ``hint`` has ``"template"`` and ``"args"`` (of a log record) or neither.

    Raises:
        TypeError, ValueError: a bad option (the message names it).
    """

    def __init__(
        self,
        max_breadcrumbs: int = DEFAULT_MAX_BREADCRUMBS,
        level: str | int = DEFAULT_LEVEL,
        before_breadcrumb: BeforeBreadcrumb | None = None,
    ) -> None:
        if isinstance(max_breadcrumbs, bool) or not isinstance(max_breadcrumbs, int):
            raise TypeError(
                f"max_breadcrumbs must be a whole number, not {type(max_breadcrumbs).__name__}"
            )
        if max_breadcrumbs < 0:
            raise ValueError(f"max_breadcrumbs must not be negative, got {max_breadcrumbs}")
        try:
            self.levelno = level_number(level)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"breadcrumb_level: {exc}") from None
        if before_breadcrumb is not None and not callable(before_breadcrumb):
            raise TypeError("before_breadcrumb must be callable")
        self.max = max_breadcrumbs
        self.before = before_breadcrumb
        self._warned = False
        # A client's events carry what was recorded since it was made, not what an earlier
        # client (or an earlier test in the same process) left in a shared trail.
        self.since = time.time()
        # Crumbs already made, by entry: consecutive errors share most of their trail, so each
        # entry is formatted (and given to before_breadcrumb) once. Only the policy thread uses it.
        self._made: dict[int, tuple[Entry, dict[str, Any] | None]] = {}
        self._memo_size = 2 * max_breadcrumbs + 16
        reserve(max_breadcrumbs)

    def snapshot(self, levelno: int) -> tuple[Entry, ...] | None:
        """On the caller's thread: the trail an event at ``levelno`` takes (error and fatal
        events only), or None."""
        if not self.max or levelno < logging.ERROR:
            return None
        trail = _current.get()
        items = (trail or _process).items
        if not items:
            return None
        newest = items[-1][0]
        if type(newest) is float and newest < self.since:
            return None  # all of it recorded before this client was made
        return tuple(items)[-self.max :]

    def attach(self, envelope: Envelope | None, entries: tuple[Entry, ...] | None) -> Any:
        """On the policy thread: ``envelope`` with the crumbs of ``entries``, oldest first
        (those recorded since this client was made)."""
        if envelope is None or not entries:
            return envelope
        if type(entries[0][0]) is not float or entries[0][0] < self.since:
            since = self.since  # the trail holds crumbs older than the client: leave them out
            entries = tuple(e for e in entries if type(e[0]) is float and e[0] >= since)
        # Each entry is made into a crumb once: the memo holds the entry, so its id stays its own,
        # and a trail made before costs C-level lookups only (consecutive errors share theirs).
        made = self._made
        hits: list[Any] = list(map(made.get, map(id, entries)))
        if None in hits:
            hits = [
                hit or self._made_crumb(entry) for hit, entry in zip(hits, entries, strict=True)
            ]
        crumbs = tuple(map(_SECOND, hits))
        if None in crumbs:  # before_breadcrumb left some out
            crumbs = tuple(crumb for crumb in crumbs if crumb is not None)
        # A tuple of plain dicts: the collector stops tracking it once it has looked at it.
        envelope.breadcrumbs = crumbs
        return envelope

    def _made_crumb(self, entry: Entry) -> tuple[Entry, dict[str, Any] | None]:
        made = self._made
        pair = (entry, self._crumb(entry))
        if len(made) >= self._memo_size:
            del made[next(iter(made))]  # the oldest
        made[id(entry)] = pair
        return pair

    def _crumb(self, entry: Entry) -> dict[str, Any] | None:
        created, levelno, category, message, args, data = entry
        if args:
            try:
                text = str(message) % args
            except Exception:
                text = f"{safe_str(message)} (arguments: {to_json_safe(args)!r})"
        else:
            text = message if type(message) is str else safe_str(message)
        try:
            when = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
        except Exception:
            when = None
        crumb: dict[str, Any] = {
            "timestamp": when,
            "level": level_from_number(levelno) if type(levelno) is int else "info",
            "category": None if category is None else safe_str(category),
            "message": text[:MAX_MESSAGE],
            "data": _CRUMB_BOUNDS.data(data, copy=True) if data else {},
        }
        if self.before is None:
            return crumb
        hint = {"template": message, "args": args} if args is not None else {}
        try:
            result = self.before(crumb, hint)
        except Exception as exc:
            self._warn(f"before_breadcrumb raised {type(exc).__name__}: {exc}; crumb kept")
            return crumb
        if result is None or isinstance(result, dict):
            return result
        self._warn(f"before_breadcrumb returned {type(result).__name__}, not a dict or None")
        return crumb

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logging.getLogger("alertkit.hooks").warning(message)


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
        except Exception:  # never into the application
            pass


_installed: BreadcrumbHandler | None = None


def install_logging(settings: Breadcrumbs) -> None:
    """Record the root logger's records from ``settings.levelno`` up (replacing an earlier
    recorder); with breadcrumbs off, only remove the earlier one."""
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        _installed = None
    if settings.max:
        _installed = BreadcrumbHandler(settings.levelno)
        root.addHandler(_installed)
