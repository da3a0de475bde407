"""What a backend says about each event it was given: delivered, retry later, or rejected for good.

Backends return outcomes instead of raising, so the pipeline has one vocabulary for every destination
and one place (:mod:`alertkit.delivery.worker`) that decides what happens next.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Delivered(msgspec.Struct, frozen=True, gc=False):
    """The destination accepted the event; ``info`` keeps what it answered (e.g. PagerDuty's dedup key).

    Untracked by the garbage collector (``gc=False``: its info never refers back to it): one is
    made per delivered event, and tracked ones made collections run several times as often.
    """

    info: dict[str, Any] = msgspec.field(default_factory=dict)


class RetryLater(msgspec.Struct, frozen=True):
    """A transient failure: try again after ``delay`` seconds (``None``: the retry policy decides)."""

    reason: str
    delay: float | None = None


class Rejected(msgspec.Struct, frozen=True):
    """A permanent failure (bad request, bad key): retrying cannot help, the event is counted as rejected."""

    reason: str


Outcome = Delivered | RetryLater | Rejected


class Dropped(msgspec.Struct, frozen=True):
    """The pipeline gave up on an event (queue full, attempts or deadline exhausted, shutdown)."""

    reason: str


class Spooled(msgspec.Struct, frozen=True):
    """Not delivered yet, but safe on disk: it is replayed when the backend recovers or on the
    next start (at least once, with the same event id)."""

    reason: str


class Skipped(msgspec.Struct, frozen=True):
    """The backend was not meant to get this event (below its ``min_level``, or a kind it does not take)."""

    reason: str


Result = Delivered | Rejected | Dropped | Spooled | Skipped
"""The final word on one event for one backend, as returned by ``send_event`` and futures."""
