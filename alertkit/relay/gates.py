"""The two places where fleet policy plugs into a relay, and nothing else.

* :class:`Screen`: asked once per entry, before delivery. It answers None (deliver) or a reason;
  with a reason the entry is acknowledged without delivery and counted under that reason (a
  silence records the event where operators can see it, e.g. a ``<stream>:silenced`` stream).
* :class:`SendGate`: asked per destination before each send. It answers how long to wait before
  sending (0: now). The relay waits, in short slices, while the entry stays pending in the
  group; nothing is dropped. A shared rate limit (a token bucket in Redis) is one.

Storm control is the third, passed as an object with the interface of
:class:`alertkit.policy.storm.StormControl`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from alertkit.backends.base import AdaptedBackend, Backend
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Outcome, RetryLater

#: The longest single wait on a gate: a stop request is noticed at least this often.
_SLICE = 0.25


class Screen(Protocol):
    """Decides, before delivery, whether an entry is delivered at all."""

    def __call__(self, envelope: Envelope, entry_id: str) -> str | None:
        """None to deliver ``envelope`` (stream entry ``entry_id``); else why it is acknowledged
        without delivery."""


class SendGate(Protocol):
    """Paces the sends to one destination (all relays together, if the gate is shared)."""

    def wait(self, backend: Backend, batch: Sequence[Envelope]) -> float:
        """Seconds to wait before ``batch`` (one event) may go to ``backend`` (0: go now, it
        is counted against the limit)."""


class GatedBackend(AdaptedBackend):
    """A destination whose every send first passes the relay's :class:`SendGate`.

    The wait happens on the backend's worker thread, so the entries stay pending (and their
    idle time is refreshed by the relay) rather than going out into a 429. When the relay
    stops while waiting, the batch is answered RetryLater and the pipeline leaves it pending.
    """

    def __init__(self, wrapped: Backend, gate: SendGate, stopping: threading.Event) -> None:
        super().__init__(wrapped)
        self.scheme = wrapped.scheme  # type: ignore[misc]
        self.gate = gate
        self.stopping = stopping

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        # One pass of the gate per event: a batch must not go out at once on one token (HTTP
        # destinations post event by event anyway).
        outcomes: list[Outcome] = []
        for index, envelope in enumerate(batch):
            while (delay := self.gate.wait(self.wrapped, [envelope])) > 0:
                if self.stopping.wait(min(delay, _SLICE)):
                    left = RetryLater("the relay is stopping; left pending")
                    return [*outcomes, *[left] * (len(batch) - index)]
            outcomes.extend(super().send([envelope]))
        return outcomes

    def counters(self) -> dict[str, int]:
        counts: dict[str, int] = self.wrapped.counters()
        return counts
