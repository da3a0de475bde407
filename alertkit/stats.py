"""Per-backend delivery counters, updated by workers and read by ``Client.stats()``.

They are also where drops become visible: every dropped or rejected event is counted here, so
this is the one place that feeds the backend's :class:`~alertkit.announce.DropAnnouncer`, and
keeps the causes and the destination's last error for the exit summary.
"""

from __future__ import annotations

import threading
from typing import Any

from alertkit.announce import DropAnnouncer, count_cause

#: Counters whose reasons are counted per cause (for the exit summary).
_CAUSED = frozenset({"dropped", "spooled", "rejected"})
#: Counters announced on the ``alertkit.drops`` logger.
_ANNOUNCED = frozenset({"dropped", "rejected"})


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

    def __init__(self, name: str) -> None:
        self.name = name
        self.announcer = DropAnnouncer(name)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.COUNTERS, 0)
        self._last: dict[str, str] = {}
        self._causes: dict[tuple[str, str], int] = {}
        self._failure: str | None = None

    def add(self, counter: str, n: int = 1, reason: str | None = None) -> None:
        with self._lock:
            self._counts[counter] += n
            if reason is not None:
                self._last[counter] = reason
                if counter in _CAUSED:
                    count_cause(self._causes, counter, reason, n)
                if counter in {"rejected", "retried"}:
                    self._failure = reason
            failure = self._failure
        if reason is not None and counter in _ANNOUNCED:
            self.announcer.add(counter, n, reason, None if counter == "rejected" else failure)

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
