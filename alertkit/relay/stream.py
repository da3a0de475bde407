"""The Redis side of a relay: one consumer of a stream's consumer group, and the relay's records.

Every command is a Redis Streams primitive (``XGROUP CREATE MKSTREAM``, ``XREADGROUP``, ``XACK``,
``XAUTOCLAIM``, ``XCLAIM ... JUSTID``, ``XPENDING``), so the consumer group does the sharing,
the crash recovery and the bookkeeping; nothing here is a home-made broker. Keys come from
:mod:`alertkit.relay.keys`: the stream and its state share one hash tag (one Redis Cluster slot),
so an acknowledgement and its dead letter go in one transaction, on a Redis Cluster too (the
transaction runs on the node that serves the stream's slot).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alertkit.backends.redis_stream import RedisStreamBackend
from alertkit.relay.keys import state_key, stream_key

Entry = tuple[str, "dict[bytes, bytes] | None"]
"""A stream entry as read: its id and its fields (None: deleted from the stream meanwhile)."""

#: The dead-letter stream's approximate cap.
DEAD_MAXLEN = 10_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GroupConsumer:
    """One consumer (``consumer``) of ``group`` on the stream that ``source`` writes to.

    ``source`` is the stream backend built from the relay's ``--from`` URL: its parsed, checked
    and masked connection options are reused, so the relay reads the stream the apps write.
    """

    def __init__(self, source: RedisStreamBackend, group: str, consumer: str) -> None:
        self.source = source
        self.stream = source.stream
        self.key = stream_key(self.stream)
        self.dead_key = state_key(self.stream, "dead")
        self.delivered_key = state_key(self.stream, "delivered")
        self.group = group
        self.consumer = consumer
        self.errors: tuple[type[BaseException], ...] = source.errors
        self.redis = source.client()  # a redis.Redis, or a redis.RedisCluster on a cluster

    def mask(self, text: str) -> str:
        return self.source.mask(text)

    def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists; a new group starts at the
        stream's first entry, so what apps wrote before any relay ran is delivered too."""
        try:
            self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except self.errors as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block: float, *, history: bool = False) -> list[Entry]:
        """New entries for this consumer (``history``: the ones it holds already, after a
        restart under the same name), waiting up to ``block`` seconds for them."""
        reply = self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.key: "0" if history else ">"},
            count=count,
            block=None if history else max(1, int(block * 1000)),
        )
        entries: list[Entry] = []
        for _, items in reply or ():
            entries.extend((_text(entry_id), fields or None) for entry_id, fields in items)
        return entries

    def claim_idle(self, idle: float, count: int) -> list[tuple[Entry, int]]:
        """Entries idle for more than ``idle`` seconds in any consumer (a relay that died), now
        this consumer's, each with how often it has been delivered (this claim included)."""
        start, claimed = "0-0", list[Entry]()
        for _ in range(10):  # bounded: ``count`` entries at most per call
            reply = self.redis.xautoclaim(
                self.key, self.group, self.consumer, int(idle * 1000), start, count=count
            )
            start, items = _text(reply[0]), reply[1]
            claimed.extend((_text(entry_id), fields or None) for entry_id, fields in items)
            if start == "0-0" or len(claimed) >= count:
                break
        if not claimed:
            return []
        counts = self.delivery_counts([entry_id for entry_id, _ in claimed])
        return [(entry, counts.get(entry[0], 1)) for entry in claimed]

    def delivery_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """How often each pending entry has been delivered (``XPENDING`` per id, pipelined)."""
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.key, self.group, min=entry_id, max=entry_id, count=1)
        counts: dict[str, int] = {}
        for rows in pipe.execute():
            for row in rows:
                counts[_text(row["message_id"])] = int(row["times_delivered"])
        return counts

    def touch(self, ids: Iterable[str]) -> None:
        """Reset the idle time of entries this relay is still delivering (``XCLAIM JUSTID``
        does not count a delivery), so that no other relay takes them over while they wait
        for a retry."""
        ids = list(ids)
        if ids:
            self.redis.xclaim(self.key, self.group, self.consumer, 0, ids, justid=True)

    def settle(
        self,
        acks: Sequence[str],
        dead: Sequence[Mapping[str, Any]] = (),
        delivered: Mapping[str, int] | None = None,
    ) -> None:
        """In one transaction: the dead letters, the delivered counts, then the acknowledgements,
        so an entry is never acknowledged without its dead letter."""
        try:
            pipe = self.redis.for_key(self.key).pipeline(transaction=True)
            for letter in dead:
                pipe.xadd(self.dead_key, dict(letter), maxlen=DEAD_MAXLEN, approximate=True)
            for destination, count in (delivered or {}).items():
                pipe.hincrby(self.delivered_key, f"{self.group}/{destination}", count)
            if acks:
                pipe.xack(self.key, self.group, *acks)
            pipe.execute()
        except self.errors:
            self.redis.failed()  # a failover moved the slot: the next settle asks the new master
            raise

    def close(self) -> None:
        self.redis.close()


def dead_letter(
    entry_id: str,
    reason: str,
    *,
    consumer: str,
    blob: bytes | None = None,
    event_id: str | None = None,
    destination: str = "",
) -> dict[str, Any]:
    """The fields of one dead letter: what failed, where, why, and the envelope itself."""
    letter: dict[str, Any] = {
        "entry": entry_id,
        "reason": reason,
        "destination": destination,
        "consumer": consumer,
        "time": f"{time.time():.3f}",
    }
    if event_id is not None:
        letter["id"] = event_id
    if blob is not None:
        letter["envelope"] = blob
    return letter
