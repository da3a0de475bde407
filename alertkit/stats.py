"""Per-backend delivery counters, updated by workers and read by ``Client.stats()``."""

from __future__ import annotations

import threading
from typing import Any


class BackendStats:
    """Counts what happened to the events given to one backend, with the last reason of each kind."""

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
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.COUNTERS, 0)
        self._last: dict[str, str] = {}

    def add(self, counter: str, n: int = 1, reason: str | None = None) -> None:
        with self._lock:
            self._counts[counter] += n
            if reason is not None:
                self._last[counter] = reason

    def count(self, counter: str) -> int:
        with self._lock:
            return self._counts[counter]

    def snapshot(self, queued: int) -> dict[str, Any]:
        """Counters plus ``queued`` (waiting now) and ``last_reason`` per counter that has one."""
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
        return result
