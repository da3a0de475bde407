"""The relay's one rule of acknowledgement, apart from the Redis calls that carry it out.

An entry is acknowledged only when every destination has an outcome: delivered, rejected (its
dead letter, with the destination and the reason, is written in the same transaction as the
acknowledgement) or spooled by the relay's spool; skipped counts as an outcome (the destination
was not meant to get it). An entry the pipeline dropped for any destination has no outcome
there: it stays pending, to be claimed and delivered again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from alertkit.delivery.pipeline import Results
from alertkit.model.outcomes import Delivered, Dropped, Rejected
from alertkit.relay.stream import dead_letter


class Held(msgspec.Struct):
    """An entry a relay is delivering: what its dead letter would need."""

    blob: bytes
    event_id: str


class Settlement(msgspec.Struct):
    """What to write for a set of finished entries."""

    acks: list[str] = msgspec.field(default_factory=list)
    letters: list[dict[str, Any]] = msgspec.field(default_factory=list)
    delivered: dict[str, int] = msgspec.field(default_factory=dict)
    left_pending: list[str] = msgspec.field(default_factory=list)


def settle(
    done: Iterable[tuple[str, Results]], held: Mapping[str, Held], consumer: str
) -> Settlement:
    """Sort finished entries (each with every destination's final result) into acknowledgements
    with their dead letters and delivered counts, and entries left pending."""
    plan = Settlement()
    for entry_id, results in done:
        entry = held.get(entry_id)
        if entry is None:
            continue
        if any(isinstance(result, Dropped) for result in results.values()):
            plan.left_pending.append(entry_id)
            continue
        for name, result in results.items():
            if isinstance(result, Rejected):
                plan.letters.append(
                    dead_letter(
                        entry_id,
                        result.reason,
                        consumer=consumer,
                        blob=entry.blob,
                        event_id=entry.event_id,
                        destination=name,
                    )
                )
            elif isinstance(result, Delivered):
                plan.delivered[name] = plan.delivered.get(name, 0) + 1
        plan.acks.append(entry_id)
    return plan
