"""Events into a Redis Stream, for relays to deliver: the app side of fleet delivery.

Each envelope, whole (event, id, level, routing, links, incident action), is appended with
``XADD <stream> * id <event id> envelope <JSON>``, encoded as the spool encodes it
(:func:`~alertkit.model.event.encode_envelope`), so a relay decodes exactly what the application
built (:func:`~alertkit.model.event.decode_envelope`). A batch
is one MULTI/EXEC round trip: its XADDs, then one ``XTRIM MAXLEN ~`` whose reply (the entries
trimmed) is counted as ``stream_evicted`` in ``stats()``. The stream's key carries a hash tag
(:func:`alertkit.relay.keys.stream_key`) so that its relay state lives in the same Redis Cluster
slot.

An ambiguous failure (a timeout after the write reached Redis) is retried, so an event can appear
twice in the stream; both copies carry the same event id, and destinations that deduplicate
(PagerDuty's dedup key) see one incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult

from alertkit.backends._redis import RedisConnected, pack
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope, encode_envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater
from alertkit.relay.keys import stream_key

DEFAULT_STREAM = "alertkit:events"
#: The default cap on the stream's length (approximate: Redis trims whole nodes).
DEFAULT_MAXLEN = 100_000


class RedisStreamBackend(RedisConnected):
    """Appends whole envelopes to a Redis Stream read by ``alertkit relay``.

    Args:
        url: ``redis-stream://[[user]:password@]host[:port][/db]`` or ``rediss-stream://`` for
            TLS (certificate checked unless ``verify=False``).
        stream: the stream's name (``?stream=``); default ``alertkit:events``.
        maxlen: the approximate cap on the stream's length (``?maxlen=``; default 100,000;
            0: no cap); trimmed entries are counted as ``stream_evicted`` in ``stats()``.
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
        password: str | None = None,
        db: int | None = None,
        socket_timeout: float = 5.0,
        connect_timeout: float | None = None,
        max_connections: int = 4,
        ssl_ca_certs: str | None = None,
        verify: bool = True,
        name: str | None = None,
        min_level: str | int | None = None,
    ) -> None:
        super().__init__(
            url,
            password=password,
            db=db,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            ssl_ca_certs=ssl_ca_certs,
            verify=verify,
            name=name,
            min_level=min_level,
        )
        if not isinstance(stream, str) or not stream.strip():
            raise ConfigError("redis-stream: stream must be a non-empty name")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 0:
            raise ConfigError(f"redis-stream: maxlen must be a whole number >= 0, got {maxlen!r}")
        self.stream = stream
        self.maxlen = maxlen
        self.key = stream_key(stream)
        self._key = self.key.encode()
        self._trim = pack(b"XTRIM", self._key, b"MAXLEN", b"~", b"%d" % maxlen) if maxlen else b""
        self.evicted = 0
        self._open_pool()

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        return cls._url_options(parts, query, text=("stream",), count=("maxlen",))

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
            replies = self._transaction(commands)
        except (self._redis_module.RedisError, OSError, ValueError) as exc:
            # ValueError: redis-py reading a socket that close() shut under it; never raise.
            reason = self._failure_reason(exc)
            return [o if isinstance(o, Rejected) else RetryLater(reason) for o in outcomes]
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
        return {"stream_evicted": self.evicted}

    def describe(self) -> str:
        return f"{super().describe()}?stream={self.stream}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
