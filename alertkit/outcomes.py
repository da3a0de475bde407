"""What a backend says about each event it was given: delivered, retry later, or rejected for good.

Backends return outcomes instead of raising, so the pipeline has one vocabulary for every destination
and one place (:mod:`alertkit.worker`) that decides what happens next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination accepted the event; ``info`` keeps what it answered (e.g. PagerDuty's dedup key)."""

    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A transient failure: try again after ``delay`` seconds (``None``: the retry policy decides)."""

    reason: str
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A permanent failure (bad request, bad key): retrying cannot help, the event is counted as rejected."""

    reason: str


Outcome = Delivered | RetryLater | Rejected


@dataclass(frozen=True, slots=True)
class Dropped:
    """The pipeline gave up on an event (queue full, attempts or deadline exhausted, shutdown)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Spooled:
    """Not delivered yet, but safe on disk: it is replayed when the backend recovers or on the
    next start (at least once, with the same event id)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """The backend was not meant to get this event (below its ``min_level``, or a kind it does not take)."""

    reason: str


Result = Delivered | Rejected | Dropped | Spooled | Skipped
"""The final word on one event for one backend, as returned by ``send_event`` and futures."""
