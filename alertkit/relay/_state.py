"""What the fleet-wide state (storm windows, silences, rate buckets) shares: which errors mean
"Redis cannot be reached", and a short memory of an outage so that each event does not wait out
its own timeout before failing open."""

from __future__ import annotations

import threading
import time

from alertkit.backends._cluster import redis_errors as _cluster_errors

#: After a failure, Redis is not asked again for this many seconds (events fail open at once).
RETRY_AFTER = 1.0


def redis_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable or failing-over Redis raises: the client's errors, its cluster errors
    and socket errors (:func:`alertkit.backends._cluster.redis_errors`)."""
    import redis

    return _cluster_errors(redis)


class Outage:
    """Remembers that Redis just failed: :meth:`down` is true for ``retry_after`` seconds."""

    def __init__(self, retry_after: float = RETRY_AFTER) -> None:
        self.retry_after = retry_after
        self._until = 0.0
        self._lock = threading.Lock()

    def down(self) -> bool:
        return time.monotonic() < self._until

    def failed(self) -> None:
        with self._lock:
            self._until = time.monotonic() + self.retry_after
