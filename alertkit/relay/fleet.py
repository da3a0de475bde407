"""The state the relays of one stream share in Redis, made once per relay and plugged into its
seams: fleet-wide storm control, silences (the screen) and rate limits (the send gate).

Each piece fails open on its own when Redis cannot be reached (see their modules), so a Redis
outage costs duplicates at worst, never a missed alert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alertkit.relay.ratelimit import SharedRateLimit
from alertkit.relay.silences import Silences
from alertkit.relay.storm import SharedStormControl

if TYPE_CHECKING:
    from alertkit.backends.redis_stream import RedisStreamBackend


class FleetState:
    """Storm windows, silences and rate buckets of ``source``'s stream, on one Redis client.

    Args:
        source: the stream the relay reads (its server, credentials and TLS settings are used).
        storm_window: seconds of a storm window; 0 turns storm control off (``storm`` is None).
        silence_refresh: seconds between two reads of the silences.
    """

    def __init__(
        self, source: RedisStreamBackend, storm_window: float, *, silence_refresh: float = 5.0
    ) -> None:
        # A redis.Redis, or a redis.RedisCluster when the source is a cluster node (made on first
        # use): every key is of the stream's hash tag, so each script runs on one node.
        self.redis: Any = source.client()
        stream = source.stream
        self.storm = SharedStormControl(self.redis, stream, storm_window) if storm_window else None
        self.silences = Silences(self.redis, stream, refresh=silence_refresh)
        self.rate_limit = SharedRateLimit(self.redis, stream)

    def stats(self) -> dict[str, dict[str, int]]:
        """Each piece's counts, ``failed_open`` among them."""
        stats = {"silences": self.silences.stats(), "rate_limit": self.rate_limit.stats()}
        if self.storm is not None:
            stats["storm"] = self.storm.stats()
        return stats

    def close(self) -> None:
        self.redis.close()
