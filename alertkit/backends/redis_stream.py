"""Events into a Redis Stream, for relays to deliver: the app side of fleet delivery.

Each envelope, whole (event, id, level, routing, links, incident action), is appended with
``XADD <stream> * id <event id> envelope <JSON>``, encoded as the spool encodes it
(:func:`~alertkit.model.event.encode_envelope`), so a relay decodes exactly what the application
built (:func:`~alertkit.model.event.decode_envelope`). A batch
is one MULTI/EXEC round trip: its XADDs, then one ``XTRIM MAXLEN ~`` whose reply (the entries
trimmed) is counted as ``stream_evicted`` in ``stats()``. The stream's key carries a hash tag
(:func:`alertkit.relay.keys.stream_key`) so that its relay state lives in the same Redis Cluster
slot.

On a Redis Cluster (``?cluster=auto``, the default, asks the node; :mod:`alertkit.backends._cluster`)
the batch goes to the master of the stream's slot, and is followed by ``WAIT 1`` when that master
has a replica: a batch counts as written once a replica has it too, so a failover (the replica
takes over from a dead master) does not lose what the application was told was written. A batch
that no replica confirmed in time is still written, and counted as ``stream_unreplicated``.

An ambiguous failure (a timeout after the write reached Redis) is retried, so an event can appear
twice in the stream; both copies carry the same event id, and destinations that deduplicate
(PagerDuty's dedup key) see one incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

from alertkit.backends._cluster import MODES, Connector, LazyRedis, redis_errors
from alertkit.backends._redis import RedisConnected, RedisOptions, pack
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope, encode_envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater
from alertkit.relay.keys import stream_key

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_STREAM = "alertkit:events"
#: The default cap on the stream's length (approximate: Redis trims whole nodes).
DEFAULT_MAXLEN = 100_000
#: The longest ``WAIT`` for a replica after a batch, in seconds (within ``socket_timeout``).
REPLICA_WAIT = 1.0


class RedisStreamBackend(RedisConnected):
    """Appends whole envelopes to a Redis Stream read by ``alertkit relay``.

    Args:
        url: ``redis-stream://[[user]:password@]host[:port][/db]`` or ``rediss-stream://`` for
            TLS (certificate checked unless ``verify=False``).
        stream: the stream's name (``?stream=``); default ``alertkit:events``.
        maxlen: the approximate cap on the stream's length (``?maxlen=``; default 100,000;
            0: no cap); trimmed entries are counted as ``stream_evicted`` in ``stats()``.
        cluster: ``auto`` (``?cluster=``; default): ask the node on first use whether it belongs
            to a Redis Cluster; ``yes``: it does; ``no``: a single server.
        replicas: replicas that must have each batch (``WAIT``) before it counts as written
            (``?replicas=``); default 1 on a cluster whose master has a replica, else 0.
        password, db, socket_timeout, connect_timeout, max_connections, ssl_ca_certs, verify:
            as for :class:`~alertkit.backends.redis.RedisBackend`.
        name: the backend's name in stats; default ``redis-stream``.
        min_level: the lowest level written; default everything.

    Raises:
        ConfigError: a malformed URL or option.
        MissingDependency: redis-py is not installed (``pip install 'alertkit[redis]'``).
    """

    scheme = "redis-stream"
    schemes = ("redis-stream", "rediss-stream")
    url_schemes = ("redis-stream", "rediss-stream")
    #: Every kind travels: the relays route them to the destinations that take each.
    kinds = frozenset({"event", "metric", "acknowledge", "resolve", "change"})
    max_batch = 1000
    max_concurrency = 1

    def __init__(
        self,
        url: str | None = None,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        cluster: str = "auto",
        replicas: int | None = None,
        **options: Unpack[RedisOptions],
    ) -> None:
        super().__init__(url, **options)
        if not isinstance(stream, str) or not stream.strip():
            raise ConfigError("redis-stream: stream must be a non-empty name")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 0:
            raise ConfigError(f"redis-stream: maxlen must be a whole number >= 0, got {maxlen!r}")
        if cluster not in MODES:
            raise ConfigError(
                f"redis-stream: cluster must be one of {', '.join(MODES)}, got {cluster!r}"
            )
        if cluster == "yes" and self.db:
            raise ConfigError(f"redis-stream: a Redis Cluster has only database 0, got /{self.db}")
        if replicas is not None and (
            isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0
        ):
            raise ConfigError(
                f"redis-stream: replicas must be a whole number >= 0, got {replicas!r}"
            )
        self.stream = stream
        self.maxlen = maxlen
        self.cluster = cluster
        self.replicas = replicas
        self.errors = redis_errors(self._redis_module)
        self._send_errors: tuple[type[BaseException], ...] = (*self.errors, ValueError)
        self.connector = Connector(self.connection_kwargs(), cluster, self.scheme)
        self._wait_ms = int(min(REPLICA_WAIT, self.socket_timeout / 2) * 1000)
        self.key = stream_key(stream)
        self._key = self.key.encode()
        self._trim = pack(b"XTRIM", self._key, b"MAXLEN", b"~", b"%d" % maxlen) if maxlen else b""
        self.evicted = 0
        self.unreplicated = 0
        self._open_pool()

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        return cls._url_options(
            parts, query, text=("stream", "cluster"), count=("maxlen", "replicas")
        )

    def client(self) -> LazyRedis:
        """A redis-py client of this stream's Redis, of its own (the relay's consumer, its fleet
        state, ``relay status``, ``alertkit silence``): a ``redis.Redis`` or, on a Redis Cluster, a
        ``redis.RedisCluster``, made on first use."""
        return self.connector.client()

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        outcomes: list[Outcome] = []
        commands: list[bytes] = []
        for envelope in batch:
            try:
                blob = encode_envelope(envelope)
            except Exception as exc:  # an envelope that cannot be encoded now never will be
                outcomes.append(Rejected(f"redis-stream: cannot encode the envelope: {exc!r}"))
                continue
            commands.append(
                pack(b"XADD", self._key, b"*", b"id", envelope.event_id.encode(), b"envelope", blob)
            )
            outcomes.append(Delivered({"stream": self.key}))
        if not commands:
            return outcomes
        if self._trim:
            commands.append(self._trim)
        try:
            pool, known = self.connector.pool_for(self.key, lambda: self._pool)
            wanted = min(known, 1) if self.replicas is None else self.replicas
            wait = pack(b"WAIT", b"%d" % wanted, b"%d" % self._wait_ms) if wanted else b""
            replies, confirmed = self._transaction(commands, pool, wait)
        except self._send_errors as exc:
            # ValueError: redis-py reading a socket that close() shut under it; never raise.
            self.connector.failed()  # a failover or a resharding: read the slots again
            reason = self._failure_reason(exc)
            return [o if isinstance(o, Rejected) else RetryLater(reason) for o in outcomes]
        if wait and isinstance(confirmed, int) and confirmed < wanted:
            self.unreplicated += len(commands) - bool(self._trim)
        if self._trim and isinstance(replies[-1], int):
            self.evicted += replies[-1]
        ids = iter(replies)
        return [
            Delivered({"stream": self.key, "id": _text(next(ids))})
            if isinstance(o, Delivered)
            else o
            for o in outcomes
        ]

    def counters(self) -> dict[str, int]:
        return {"stream_evicted": self.evicted, "stream_unreplicated": self.unreplicated}

    def describe(self) -> str:
        cluster = "" if self.cluster == "auto" else f"&cluster={self.cluster}"
        return f"{super().describe()}?stream={self.stream}{cluster}"

    def _close(self) -> None:
        super()._close()
        self.connector.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
