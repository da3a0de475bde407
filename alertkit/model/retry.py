"""The retry policy: one immutable value that every backend's worker follows.

Exponential backoff with full jitter, a ceiling, an attempt cap, an overall per-event deadline, and
the destination's own hint (``Retry-After``) honoured up to ``max_hint``.
"""

from __future__ import annotations

import random

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True):
    """How often and how long to retry a failed delivery.

    Attributes:
        max_attempts: deliveries tried per event, the first included (1 = never retry).
        backoff: the base delay in seconds; attempt ``n`` waits up to ``backoff * 2 ** (n - 1)``.
        max_backoff: the ceiling of one computed wait.
        jitter: draw each wait uniformly from ``[0, computed]`` ("full jitter") so that many
            processes recovering together do not retry in lockstep.
        deadline: seconds from capture after which an event is no longer retried.
        max_hint: the longest server-requested wait (``Retry-After``) that is honoured as is.
        circuit_threshold: consecutive failed sends that open a backend's circuit (0: never).
        circuit_cooldown: how long an open circuit stays open before one probe is let through;
            it doubles while probes fail, up to ``circuit_max_cooldown``.
        circuit_max_cooldown: the ceiling of that cool-down.
    """

    max_attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    deadline: float = 120.0
    max_hint: float = 300.0
    circuit_threshold: int = 5
    circuit_cooldown: float = 10.0
    circuit_max_cooldown: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("retry: max_attempts must be at least 1")
        if self.circuit_threshold < 0:
            raise ValueError("retry: circuit_threshold must not be negative")
        for name in (
            "backoff",
            "max_backoff",
            "deadline",
            "max_hint",
            "circuit_cooldown",
            "circuit_max_cooldown",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"retry: {name} must not be negative")

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` failures."""
        if hint is not None:
            return min(max(0.0, hint), self.max_hint)
        computed = min(self.max_backoff, self.backoff * (2 ** max(0, attempt - 1)))
        return random.uniform(0.0, computed) if self.jitter else computed

    def gives_up(self, attempt: int, age: float, wait: float) -> str | None:
        """Why no further attempt is made, or None to retry."""
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts"
        if age + wait > self.deadline:
            return f"deadline of {self.deadline:g}s exceeded"
        return None
