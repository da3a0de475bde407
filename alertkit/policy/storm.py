"""Storm control: one alert per fingerprint and window, then a digest with the count.

A storm of identical errors (the same fingerprint the application chose, else the same dedup key,
else the same type + message template + logger) must not message someone 4,213 times. The first occurrence goes at once; repeats inside the window
are counted and marked ``storm_suppressed``; when the window ends a digest event follows
("PaymentDeclined x 4,213 in the last 60 s") so the scale is visible. The decision is made once, on
the policy thread before fan-out; backends that message people (``storm_controlled``: Slack, email,
Telegram, WhatsApp) skip the repeats and get the digest, while sinks that store or aggregate (the
inbox, the event API, Redis, PagerDuty, which deduplicates by key itself) still get every event, so
nothing is lost. Events of other kinds (metrics, incident lifecycle) pass untouched.
"""

from __future__ import annotations

import copy
import threading
import time

import msgspec

from alertkit.model.event import Envelope
from alertkit.model.grouping import fingerprint_text

MAX_FINGERPRINTS = 10_000


class _Window(msgspec.Struct):
    ends: float
    suppressed: int
    last: Envelope


def fingerprint(envelope: Envelope) -> str:
    """The grouping key: the application's fingerprint (:mod:`alertkit.model.grouping`, its
    ``"{{ default }}"`` already expanded) if any, else the dedup key, else event type + template
    + logger."""
    if envelope.fingerprint:
        return "fp:" + "\x1f".join(envelope.fingerprint)
    if envelope.incident_key:
        return f"key:{envelope.incident_key}"
    event = envelope.event
    template = envelope.template if envelope.template is not None else event.event_message
    return f"{event.event_type}\x1f{template}\x1f{envelope.logger_name or ''}"


class StormControl:
    """Per-fingerprint rate limit with digests; ``window`` seconds (0 disables)."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._earliest = float("inf")  # the soonest end of a window that has repeats

    def __call__(self, envelope: Envelope) -> Envelope:
        if self.window <= 0 or envelope.kind != "event" or envelope.request_log is not None:
            return envelope
        key = fingerprint(envelope)
        now = time.monotonic()
        with self._lock:
            current = self._windows.get(key)
            if current is not None and now < current.ends:
                current.suppressed += 1
                current.last = envelope
                self._earliest = min(self._earliest, current.ends)
                envelope.storm_suppressed = True
                return envelope
            if len(self._windows) >= MAX_FINGERPRINTS:
                self._evict(now)
            self._windows[key] = _Window(ends=now + self.window, suppressed=0, last=envelope)
        return envelope

    def _evict(self, now: float) -> None:
        expired = [k for k, w in self._windows.items() if w.ends <= now and not w.suppressed]
        for key in expired or list(self._windows)[: MAX_FINGERPRINTS // 10]:
            del self._windows[key]

    def next_due(self) -> float | None:
        """Seconds until the next window with suppressed events ends, or None."""
        earliest = self._earliest
        if earliest == float("inf"):
            return None
        return max(0.0, earliest - time.monotonic())

    def due_digests(self, *, flush_all: bool = False) -> list[Envelope]:
        """Digest events for windows that ended (all of them with ``flush_all``, at shutdown)."""
        now = time.monotonic()
        if not flush_all and now < self._earliest:
            return []
        digests = []
        with self._lock:
            earliest = float("inf")
            for key, window in list(self._windows.items()):
                if window.ends > now and not flush_all:
                    if window.suppressed:
                        earliest = min(earliest, window.ends)
                    continue
                if window.suppressed:
                    digests.append(self._digest(window, now))
                del self._windows[key]
            self._earliest = earliest
        return digests

    def _digest(self, window: _Window, now: float) -> Envelope:
        return digest_of(
            window.last, window.suppressed + 1, self.window - max(0.0, window.ends - now)
        )


def digest_of(last: Envelope, count: int, span: float) -> Envelope:
    """The digest event of a storm: ``last`` (its latest repeat) retold as ``count`` occurrences
    in ``span`` seconds, with a fresh event id; shared by the per-process and the fleet-wide
    (:mod:`alertkit.relay.storm`) storm control so both read the same."""
    from alertkit.model.event import new_event_id

    event = copy.copy(last.event)
    name = event.event_type.rsplit(".", 1)[-1]
    event.event_message = (
        f"{name} x {count:,} in the last {_duration(span)}: {last.event.event_message}"
    )
    event.event_time = int(time.time() * 1000)
    digest = copy.copy(last)
    digest.event = event
    digest.details = {
        **last.details,
        "storm_count": count,
        "storm_window_seconds": round(span, 1),
    }
    if last.fingerprint:
        digest.details["fingerprint"] = fingerprint_text(last.fingerprint)
    digest.created = time.time()
    digest.event_id = new_event_id()
    digest.storm_suppressed = False
    digest.digest = True
    return digest


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
