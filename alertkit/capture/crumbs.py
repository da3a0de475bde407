"""One client's breadcrumb options, and the crumbs it makes of trail entries on the policy thread.

The trails themselves (:mod:`alertkit.capture.breadcrumbs`) hold references only; an error event
takes a copy of its trail on the caller's thread, and the client's :class:`Breadcrumbs` turns it
into dicts here (message formatted, ``data`` bounded, ``before_breadcrumb`` run), each entry once:
consecutive errors share most of their trail.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from itertools import compress
from typing import Any

from alertkit.capture.breadcrumbs import (
    MAX_DATA_KEYS,
    Entry,
    crumb_data,
    current_items,
    reserve,
)
from alertkit.model.event import Envelope
from alertkit.model.levels import level_from_number, level_number
from alertkit.model.stacktrace import safe_str
from alertkit.model.values import Bounds, carried_over, note_carried, to_json_safe

#: Breadcrumbs kept per context by default, and the lowest level recorded from logging.
DEFAULT_MAX_BREADCRUMBS = 50
DEFAULT_LEVEL = "info"
#: Characters kept of a breadcrumb's message.
MAX_MESSAGE = 1000

#: ``before_breadcrumb(crumb, hint) -> crumb | None``.
BeforeBreadcrumb = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


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
        self.read = True  # whether anything reads the trails (see read_by)
        self._warned = False
        # A client's events carry what was recorded since it was made, not what an earlier
        # client (or an earlier test in the same process) left in a shared trail.
        self.since = time.time()
        # Crumbs already made, by entry: consecutive errors share most of their trail, so each
        # entry is formatted (and given to before_breadcrumb) once. Only the policy thread uses it.
        self._made: dict[int, tuple[Entry, dict[str, Any] | None]] = {}
        self._memo_size = 2 * max_breadcrumbs + 16
        self._second: tuple[int | None, str] = (None, "")  # a second, and its text (see _timestamp)
        # The last trail made, and its crumbs (None where before_breadcrumb left one out).
        self._last: tuple[tuple[Entry, ...], tuple[dict[str, Any] | None, ...]] = ((), ())
        reserve(max_breadcrumbs)

    def read_by(
        self, sends: Iterable[bool], processors: Sequence[object], *hooks: object | None
    ) -> None:
        """Take trails only if something reads them: a destination that sends breadcrumbs
        (``sends``: each backend's ``sends_breadcrumbs``) or a hook of the application's (its
        ``processors``, ``before_send``, ``on_drop``), which may look at the event. Otherwise
        errors take none, as with ``max_breadcrumbs=0``, and the records still join the trail
        (another client in the process may take it)."""
        self.read = any(sends) or bool(processors) or any(hook is not None for hook in hooks)

    def snapshot(self, levelno: int) -> tuple[Entry, ...] | None:
        """On the caller's thread: the trail an event at ``levelno`` takes (error and fatal
        events only, when something reads it: :meth:`read_by`), or None."""
        if not self.max or levelno < logging.ERROR or not self.read:
            return None
        items = current_items()
        if not items:
            return None
        newest = items[-1][0]
        if type(newest) is float and newest < self.since:
            return None  # all of it recorded before this client was made
        return tuple(items[-self.max :])  # (the list may hold up to twice the capacity)

    def cut(self, items: list[Entry] | None, end: int) -> tuple[Entry, ...] | None:
        """On the policy thread: the trail an event took as :meth:`snapshot` gives it, from the
        trail's list and its length when the event was captured (a trail's list only grows:
        entries ``[:end]`` are still those). The caller's thread then copies nothing."""
        if not items or end <= 0:
            return None
        newest = items[end - 1][0]
        if type(newest) is float and newest < self.since:
            return None  # all of it recorded before this client was made
        return tuple(items[max(0, end - self.max) : end])

    def attach(self, envelope: Envelope | None, entries: tuple[Entry, ...] | None) -> Any:
        """On the policy thread: ``envelope`` with the crumbs of ``entries``, oldest first
        (those recorded since this client was made)."""
        if envelope is None or not entries:
            return envelope
        if type(entries[0][0]) is not float or entries[0][0] < self.since:
            since = self.since  # the trail holds crumbs older than the client: leave them out
            entries = tuple(e for e in entries if type(e[0]) is float and e[0] >= since)
        # Each entry is made into a crumb once: the memo holds the entry, so its id stays its own.
        # Consecutive errors share most of their trail: what the last trail carries over is
        # taken from it by identity, in C, and only the entries new to it are looked up.
        last, last_crumbs = self._last
        carried = carried_over(last, entries)
        rest = entries[carried:]
        hits: list[Any] = list(map(self._made.get, map(id, rest)))
        if None in hits:  # usually the newest entry only
            for index in compress(range(len(hits)), map(operator.not_, hits)):
                hits[index] = self._made_crumb(rest[index])
        crumbs = last_crumbs[len(last_crumbs) - carried :] + tuple(map(_SECOND, hits))
        self._last = (entries, crumbs)
        if self.before is not None and None in crumbs:  # before_breadcrumb left some out
            crumbs = tuple(crumb for crumb in crumbs if crumb is not None)
        elif carried:  # the scrubber and the limits need not compare the trails again
            note_carried(crumbs, last_crumbs, carried)
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
        created, levelno, category, message, args, data, values = entry
        data = crumb_data(data, values)  # (a log record's extra fields are made a dict only now)
        if args:
            try:
                text = str(message) % args
            except Exception:
                text = f"{safe_str(message)} (arguments: {to_json_safe(args)!r})"
        else:
            text = message if type(message) is str else safe_str(message)
        try:
            when = self._timestamp(created)
        except Exception:
            when = None
        crumb: dict[str, Any] = {
            "timestamp": when,
            "level": level_from_number(levelno) if type(levelno) is int else "info",
            "category": category
            if type(category) is str or category is None
            else safe_str(category),
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

    def _timestamp(self, created: Any) -> str:
        """``created`` in ISO 8601 to the millisecond, in UTC, as ``datetime.isoformat`` writes it.

        ``isoformat`` costs four times the conversion (the offset is formatted each time): the
        text up to the second is kept for the second it names, which the next crumbs share.
        """
        moment = datetime.fromtimestamp(created, timezone.utc)
        if type(created) is not float:  # a record changed by the application: no shortcut
            return moment.isoformat(timespec="milliseconds")
        micro = moment.microsecond
        # The whole second of the moment, rounded as fromtimestamp rounded it (5.9999997 is 6).
        second = round(created - micro / 1e6)
        if second != self._second[0]:
            text = moment.isoformat(timespec="milliseconds")
            self._second = (second, text[:-10])
            return text
        return f"{self._second[1]}.{micro // 1000:03d}+00:00"

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logging.getLogger("alertkit.hooks").warning(message)
