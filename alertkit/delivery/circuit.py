"""Flow control for one backend: a circuit breaker and a token bucket.

The circuit breaker stops hammering a destination that keeps failing: after ``threshold``
consecutive failed sends it opens for a cool-down (doubling, up to a ceiling, while probes keep
failing), then lets one probe through; a success closes it. The token bucket keeps a backend under
its documented rate (PagerDuty: about 120 events a minute per routing key) by waiting, not dropping.
"""

from __future__ import annotations

import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker; not thread-safe (the worker holds its lock)."""

    def __init__(self, threshold: int, cooldown: float, max_cooldown: float) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.failures = 0
        self.state = CLOSED
        self.cooldown = cooldown
        self.open_until = 0.0
        self.probing = False

    def allows(self, now: float) -> bool:
        """Whether a send may start now; in half-open state only one probe at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and now >= self.open_until:
            self.state = HALF_OPEN
        return self.state == HALF_OPEN and not self.probing

    def start_probe(self) -> None:
        if self.state == HALF_OPEN:
            self.probing = True

    def is_probe(self) -> bool:
        return self.state == HALF_OPEN

    def wait_time(self, now: float) -> float | None:
        """Seconds until a probe may start, or None when closed."""
        if self.state == OPEN:
            return max(0.0, self.open_until - now)
        return None

    def record_success(self) -> bool:
        """Note a send the destination answered; True if this closed an open circuit."""
        reopened = self.state != CLOSED
        self.failures = 0
        self.state = CLOSED
        self.cooldown = self.base_cooldown
        self.probing = False
        return reopened

    def record_failure(self, now: float) -> bool:
        """Note a send that failed as a whole; True if this opened the circuit."""
        self.failures += 1
        if self.state == HALF_OPEN:
            self.cooldown = min(self.max_cooldown, self.cooldown * 2)
            self._open(now)
            return True
        if self.state == CLOSED and self.threshold > 0 and self.failures >= self.threshold:
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.open_until = now + self.cooldown
        self.probing = False


class TokenBucket:
    """``rate`` events per ``per`` seconds, with bursts up to ``rate``."""

    def __init__(self, rate: int, per: float) -> None:
        self.capacity = float(max(1, rate))
        self.refill = self.capacity / per
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def reserve(self, count: int, now: float) -> float:
        """Take ``count`` tokens if there are enough and return 0; else the seconds to wait."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        need = min(float(count), self.capacity)
        if self.tokens >= need:
            self.tokens -= need
            return 0.0
        return (need - self.tokens) / self.refill
