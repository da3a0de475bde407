"""Drops made visible without asking: rate-limited WARNING lines while running, one summary at exit.

A burst that overflows a queue drops thousands of events in a second. One warning per event would
bury the application's own output (and cost the caller's thread); none at all leaves the user
guessing why events are missing. So each source of drops (a backend, or the intake) says so at
once, then at most once a minute how many it dropped or had rejected since its last line, why,
and the destination's last error; what is still untold is said at shutdown
(:meth:`alertkit.delivery.stats.BackendStats.announce`). The lines go to the ``alertkit.drops`` logger at WARNING, which
reaches stderr through :data:`logging.lastResort` when the application configured no logging.

At exit, :func:`exit_summary` turns the final counts into one line saying what was delivered,
spooled, dropped and rejected per backend, and why, in words that match what happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

log = logging.getLogger("alertkit.drops")

#: Seconds between two lines about the same source.
INTERVAL = 60.0
#: Distinct causes counted per source; the rest are summed up as "other reasons" (reasons may
#: quote a server's answer, so they are not a bounded set).
MAX_CAUSES = 8
OTHER = "other reasons"
_LAST_ERROR = "; last error: "
#: The kinds of events announced (spooled ones are safe on disk, not lost).
ANNOUNCED = frozenset({"dropped", "rejected"})
_BUDGET = "shutdown budget exhausted"  # the worker's BUDGET_RAN_OUT
_NOT_RETRIED = "not retried: the next attempt was due after the shutdown budget"  # NOT_RETRIED


def cause(reason: str) -> str:
    """What groups drops: ``gave up after 6 attempts`` of ``gave up after 6 attempts; last
    error: ...`` (the error itself is reported apart, as the source's last failure)."""
    return reason.partition(_LAST_ERROR)[0] if _LAST_ERROR in reason else reason


def count_cause(
    causes: dict[tuple[str, str], int], kind: str, reason: str, n: int
) -> tuple[str, str]:
    """Add ``n`` to ``(kind, cause(reason))`` in ``causes``, keeping at most :data:`MAX_CAUSES`
    causes per kind. Runs for every dropped event (on the caller's thread for an intake drop),
    so the usual case, a cause already counted, is one lookup. Returns the key counted."""
    key = (kind, cause(reason))
    count = causes.get(key)
    if count is None:
        if sum(1 for k in causes if k[0] == kind) >= MAX_CAUSES:
            key = (kind, OTHER)
        count = causes.get(key, 0)
    causes[key] = count + n
    return key


def _events(n: int) -> str:
    return f"{n:,} event" + ("" if n == 1 else "s")


class DropAnnouncer:
    """Rate-limited WARNING lines about one source's dropped and rejected events.

    The owner (:class:`~alertkit.delivery.stats.BackendStats`) counts the events per cause and, under
    its own lock, checks :attr:`next_at` on each drop (one clock read) and for a :meth:`line` when
    it is: the first drop is announced at once, later ones with the next drop at least
    ``interval`` seconds after the previous line, or at shutdown. A line gives the counts
    since the previous one: the difference between the owner's counts and those last told.
    """

    def __init__(
        self,
        source: str,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.interval = interval
        self.lines = 0  # lines made so far
        self._clock = clock
        self._told: dict[tuple[str, str], int] = {}
        self._told_at: float | None = None
        self.next_at = float("-inf")  # clock time from which the next line may be made

    def line(self, causes: Mapping[tuple[str, str], int], failure: str | None = None) -> str | None:
        """The line for the events of ``causes`` not told yet (kinds dropped and rejected),
        with ``failure``, the destination's last error; None if there are none."""
        pending = {
            key: n - self._told.get(key, 0)
            for key, n in causes.items()
            if key[0] in ANNOUNCED and n > self._told.get(key, 0)
        }
        if not pending:
            return None
        now = self._clock()
        text = f"alertkit: {self.source}: " + _by_kind(pending, lambda what: what)
        if self._told_at is not None:
            text += f" in the last {now - self._told_at:.0f}s"
        if failure and failure not in text:
            text += f"; last error: {failure}"
        if self._told_at is None:
            text += "; further drops are reported at most once " + (
                "a minute" if self.interval == INTERVAL else f"every {self.interval:g}s"
            )
        self._told.update({key: causes[key] for key in pending})
        self._told_at = now
        self.next_at = now + self.interval
        self.lines += 1
        return text


_KIND_ORDER = {"spooled": 0, "dropped": 1, "rejected": 2}


def _by_kind(
    causes: Mapping[tuple[str, str], int],
    words: Callable[[str], str],
    *,
    count_first: bool = False,
) -> str:
    """``dropped 5 events (3 queue full, 2 gave up after 6 attempts)`` (or ``5 dropped (...)``
    with ``count_first``), then the other kinds: the events per kind, each with its causes,
    the most frequent first."""
    kinds: dict[str, list[tuple[int, str]]] = {}
    for (kind, what), n in causes.items():
        kinds.setdefault(kind, []).append((n, what))
    parts = []
    for kind in sorted(kinds, key=lambda k: _KIND_ORDER.get(k, 9)):
        items = sorted(kinds[kind], key=lambda item: -item[0])
        total = sum(n for n, _ in items)
        if len(items) == 1:
            detail = words(items[0][1])
        else:
            detail = ", ".join(f"{n:,} {words(what)}" for n, what in items)
        head = f"{total:,} {kind}" if count_first else f"{kind} {_events(total)}"
        parts.append(f"{head} ({detail})")
    return ", ".join(parts)


class Totals(Protocol):
    """The final counts of one backend (or the intake), as :class:`~alertkit.delivery.stats.BackendStats`
    keeps them."""

    def count(self, counter: str) -> int:
        """The value of ``counter`` (delivered, spooled, dropped, rejected ...)."""

    def causes(self) -> dict[tuple[str, str], int]:
        """Events per ``(counter, cause)`` for dropped, spooled and rejected."""

    @property
    def last_failure(self) -> str | None:
        """The destination's last error (a RetryLater or Rejected reason)."""


def explain(what: str, *, budget: float, elapsed: float) -> str:
    """A cause in the words of what happened: a shutdown that gave up on an event because its
    next attempt was due after the budget took no time, and must not say the budget ran out."""
    if what == _NOT_RETRIED or (what == _BUDGET and elapsed < budget * 0.95):
        return f"{_NOT_RETRIED} of {budget:.3g}s"
    if what == _BUDGET:
        return f"the shutdown budget of {budget:.3g}s ran out"
    if what == "shut down":
        return "arrived after shutdown began"
    return what


def exit_summary(
    backends: Mapping[str, Totals], intake: Totals | None, *, budget: float, elapsed: float
) -> str | None:
    """One line on what was not delivered, per backend, with counts, causes and the last
    error; None when everything given to the backends was delivered.

    Args:
        backends: the final counts per backend name.
        intake: the counts of events dropped before reaching any backend.
        budget: the shutdown budget in seconds.
        elapsed: how long the shutdown took.
    """

    def words(what: str) -> str:
        return explain(what, budget=budget, elapsed=elapsed)

    parts: list[str] = []
    for name, totals in backends.items():
        if not any(totals.count(c) for c in ("spooled", "dropped", "rejected")):
            continue
        text = f"{name}: " + _by_kind(totals.causes(), words, count_first=True)
        failure = totals.last_failure
        if failure and failure not in text:
            text += f"; last error: {failure}"
        parts.append(f"{text}; {totals.count('delivered'):,} delivered")
    if intake is not None and intake.count("dropped"):
        parts.append("intake: " + _by_kind(intake.causes(), words, count_first=True))
    if not parts:
        return None
    return (
        f"alertkit: not delivered: {' | '.join(parts)} "
        f"(shutdown took {elapsed:.1f}s of its {budget:.3g}s budget)"
    )
