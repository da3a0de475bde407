"""Per-backend delivery counters, updated by workers and read by ``Client.stats()``.

They are also where drops become visible: every dropped or rejected event is counted here, so
this is the one place that feeds the backend's :class:`~alertkit.delivery.announce.DropAnnouncer`, and
keeps the causes and the destination's last error for the exit summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from alertkit.delivery.announce import ANNOUNCED, DropAnnouncer, count_cause, log

#: Counters whose reasons are counted per cause (for the exit summary).
_CAUSED = frozenset({"dropped", "spooled", "rejected"})
_KEYS_KEPT = 64


class BackendStats:
    """Counts what happened to the events given to one backend, with the last reason of each
    kind, the events per cause, and the destination's last error."""

    COUNTERS = (
        "enqueued",
        "delivered",
        "retried",
        "rejected",
        "dropped",
        "spooled",
        "replayed",
        "skipped",
        "evicted",
    )

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.announcer = DropAnnouncer(name, clock=clock)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.COUNTERS, 0)
        self._last: dict[str, str] = {}
        self._causes: dict[tuple[str, str], int] = {}
        # reason -> its key in _causes, per counter: most drops repeat a reason seen before
        self._keys: dict[str, dict[str, tuple[str, str]]] = {c: {} for c in _CAUSED}
        self._failure: str | None = None

    def add(self, counter: str, n: int = 1, reason: str | None = None) -> None:
        """Count ``n`` events; a dropped or rejected one is announced (rate-limited).

        An intake drop runs this on the application's thread, once per event: the usual
        case (a reason seen before, no line due) is a few dict operations and a clock read.
        """
        line = None
        with self._lock:
            self._counts[counter] += n
            if reason is not None:
                self._last[counter] = reason
                if counter in _CAUSED:
                    keys = self._keys[counter]
                    key = keys.get(reason)
                    if key is not None:
                        self._causes[key] += n
                    else:
                        key = count_cause(self._causes, counter, reason, n)
                        if len(keys) < _KEYS_KEPT:
                            keys[reason] = key
                if counter in {"rejected", "retried"}:
                    self._failure = reason
                if counter in ANNOUNCED and self._clock() >= self.announcer.next_at:
                    line = self.announcer.line(self._causes, self._failure)
        if line is not None:
            log.warning("%s", line)

    def hush(self) -> None:
        """No more drop lines (at shutdown): the exit summary counts every drop of the whole run,
        those the rate limit held back included, in one line instead of one per backend."""
        with self._lock:
            self.announcer.next_at = float("inf")

    def failed(self, reason: str) -> None:
        """Remember the destination's last error (a RetryLater reason, retried or not)."""
        with self._lock:
            self._failure = reason

    @property
    def last_failure(self) -> str | None:
        """The destination's last error: why the last failed attempt failed."""
        with self._lock:
            return self._failure

    def count(self, counter: str) -> int:
        with self._lock:
            return self._counts[counter]

    def causes(self) -> dict[tuple[str, str], int]:
        """Events per ``(counter, cause)`` for dropped, spooled and rejected events."""
        with self._lock:
            return dict(self._causes)

    def snapshot(self, queued: int) -> dict[str, Any]:
        """Counters plus ``queued`` (waiting now), ``last_reason`` per counter that has one and
        ``last_failure``, the destination's last error."""
        with self._lock:
            result: dict[str, Any] = dict(self._counts)
            result["queued"] = queued
            result["last_reason"] = dict(self._last)
            errors = [
                self._last[k]
                for k in ("dropped", "spooled", "rejected", "retried")
                if k in self._last
            ]
            result["last_error"] = errors[0] if errors else None
            result["last_failure"] = self._failure
        return result
