"""Redis in the Chouette-IoT layout: logs and metrics that the Chouette aggregator ships to Datadog.

WIRE.md section 3, as the Chouette aggregator (``akatashev/chouette-iot``, branch dev) reads it:

* every queue is a pair, a sorted set ``<queue>.keys`` (member: a uuid4 string, score: the unix
  time) and a hash ``<queue>.values`` (field: the same uuid4, value: the JSON message);
* events go to ``chouette:logs:wrapped`` as Datadog log JSON, metrics (envelopes of kind
  ``"metric"``, made by :mod:`alertkit.capture.metrics`) to ``chouette:metrics:raw``.

A whole batch, logs and metrics together, is written with one ``ZADD`` and one ``HSET`` per queue
inside one MULTI/EXEC, so a batch costs one round trip whatever its size. The uuid of a message is
derived from the envelope's event id, so a retry after an ambiguous failure (a timeout after the
write reached Redis) overwrites the same message instead of adding a duplicate.
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

import msgspec

from alertkit.backends._redis import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    RedisConnected,
    RedisOptions,
    command,
)
from alertkit.backends.base import ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater
from alertkit.model.stacktrace import render_stacktrace

if TYPE_CHECKING:
    from typing_extensions import Unpack

LOGS_QUEUE = "chouette:logs:wrapped"
METRICS_QUEUE = "chouette:metrics:raw"
__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "LOGS_QUEUE", "METRICS_QUEUE", "RedisBackend"]

#: Keys of the log JSON itself; an ``extra`` field with one of these names goes under ``"extra"``.
RESERVED_LOG_KEYS = frozenset(
    {
        "date",
        "ddsource",
        "service",
        "ddtags",
        "level",
        "message",
        "exc_info",
        "breadcrumbs",
        "fingerprint",
        "trace_id",
        "span_id",
        "extra",
    }
)

_ENCODER = msgspec.json.Encoder()
_HEX = re.compile(r"[0-9a-fA-F]{32}")
#: The variant digit of a version-4 UUID (10xx) for each hex digit, keeping its two low bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def chouette_log_level() -> int | None:
    """The level of ``CHOUETTE_LOG_LEVEL`` (a name such as ``WARNING``, or a number), or None.

    Raises:
        ConfigError: the variable is set to something that is not a log level.
    """
    raw = os.environ.get("CHOUETTE_LOG_LEVEL", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelName(raw.upper())
    if not isinstance(level, int):
        raise ConfigError(
            f"redis: CHOUETTE_LOG_LEVEL={raw!r} is not a log level "
            "(expected NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)"
        )
    return level


_LEVEL_NAMES = {n: logging.getLevelName(n) for n in (10, 20, 30, 40, 50)}


def _level_name(levelno: int) -> str:
    """The name of a level that is not one of the five standard ones (those are looked up in
    ``_LEVEL_NAMES`` inline, once per message)."""
    return str(logging.getLevelName(levelno))


class _UtcDates:
    """ISO 8601 UTC dates with microseconds, exactly as ``datetime.isoformat`` writes them; the
    date and time of day are formatted once per second (the events of a batch share them)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = (-1.0, "")  # (second, its date and time): one attribute, so threads agree

    def iso(self, timestamp: float) -> str:
        if not 0 <= timestamp < 253402300799:  # before 1970 or after 9999: the slow way
            return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(
                timespec="microseconds"
            )
        # Rounded as datetime.fromtimestamp rounds: half to even on the fraction's microseconds.
        fraction, second = math.modf(timestamp)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            micros -= 1_000_000
            second += 1
        last = self._last
        if second != last[0]:
            moment = datetime.fromtimestamp(second, tz=timezone.utc)
            last = self._last = (second, moment.isoformat(timespec="seconds")[:-6])
        return "%s.%06d+00:00" % (last[1], micros)  # noqa: UP031 (cheaper than an f-string)


class _LogText(msgspec.Struct, omit_defaults=True, gc=False):
    msg: str
    template: str | None = None


class _LogLine(msgspec.Struct, omit_defaults=True, gc=False):
    """The fixed keys of a Chouette log message, in the order the original handler writes them."""

    date: str
    ddsource: str
    service: str
    ddtags: list[str]
    level: str
    message: _LogText
    exc_info: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    #: An error's breadcrumbs, oldest first, and the fingerprint the application chose.
    breadcrumbs: Sequence[dict[str, Any]] | None = None
    fingerprint: Sequence[str] | None = None


def _member(event_id: str) -> str:
    """The uuid4 member of a message, derived from the event id so that it is the same on every
    retry of the envelope: its hex digits with the version and variant bits of a version-4 UUID."""
    if len(event_id) == 32 and _HEX.fullmatch(event_id):
        h = event_id.lower()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
    return str(uuid.UUID(bytes=uuid.uuid5(uuid.NAMESPACE_URL, event_id).bytes, version=4))


class RedisBackend(RedisConnected):
    """Writes events and metrics to Redis queues for the Chouette-IoT aggregator.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://`` for TLS. Without a
            URL (or without a host in it) the host and port come from ``REDIS_HOST`` and
            ``REDIS_PORT`` as in the Chouette client, else ``127.0.0.1:6379``.
        max_connections: size of the connection pool.
        socket_timeout: seconds to wait on a Redis reply before the batch is retried later.
        connect_timeout: seconds to wait for a connection; default ``socket_timeout``.
        password: overrides the URL's password.
        db: overrides the URL's database number.
        service_name: ``service`` and ``ddsource`` of every log; default the client's
            ``app_name``, else the record's logger name, else ``"python"``.
        ssl_ca_certs: a CA bundle for ``rediss://``.
        verify: verify the server certificate of ``rediss://`` (keep it on outside tests).
        name: the backend's name in stats; default ``redis``.
        min_level: the lowest level of events written; default ``CHOUETTE_LOG_LEVEL`` when set,
            else everything. Metrics are never filtered by level.

    Raises:
        ConfigError: a malformed URL or option.
        MissingDependency: redis-py is not installed (``pip install 'alertkit[redis]'``).
    """

    schemes = ("redis", "rediss")
    kinds = frozenset({"event", "metric"})
    max_batch = 2000
    max_concurrency = 1

    def __init__(
        self,
        url: str | None = None,
        *,
        service_name: str | None = None,
        **options: Unpack[RedisOptions],
    ) -> None:
        if options.get("min_level") is None:
            options["min_level"] = chouette_log_level()
        super().__init__(url, **options)
        if service_name is not None and (not isinstance(service_name, str) or not service_name):
            raise ConfigError("redis: service_name must be a non-empty string")
        self.service_name = service_name
        self._app_name: str | None = None
        self._dates = _UtcDates()
        self._open_pool()

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        return cls._url_options(parts, query, text=("service_name",))

    def bind(self, context: ClientContext) -> None:
        self._app_name = context.app_name

    # -- the Chouette messages ------------------------------------------------------------------

    def log_message(self, envelope: Envelope) -> dict[str, Any]:
        """The Datadog log JSON of an event, as the Chouette log handler writes it (WIRE.md 3)."""
        message: dict[str, Any] = msgspec.json.decode(self.log_json(envelope))
        return message

    def log_json(self, envelope: Envelope) -> bytes:
        """:meth:`log_message` encoded: a struct for the fixed keys, the ``extra`` fields spliced
        in after them (the encoder keeps their order), which costs a fraction of building and
        encoding one dict per event."""
        event = envelope.event
        service = self.service_name or self._app_name or envelope.logger_name or "python"
        tags = envelope.tags
        exc_text = envelope.exc_text or (
            render_stacktrace(event.event_stacktrace) if event.event_stacktrace else None
        )
        line = _LogLine(
            self._dates.iso(envelope.created),
            service,
            service,
            [f"{key}:{value}" if value else key for key, value in tags.items()] if tags else [],
            _LEVEL_NAMES.get(envelope.levelno) or _level_name(envelope.levelno),
            _LogText(event.event_message, envelope.template),
            exc_text or None,
            envelope.trace_id,
            envelope.span_id,
            envelope.breadcrumbs or None,
            envelope.fingerprint or None,
        )
        details = envelope.details
        if not details:
            return _ENCODER.encode(line)
        if not RESERVED_LOG_KEYS.isdisjoint(details):
            clashes = {k: v for k, v in details.items() if k in RESERVED_LOG_KEYS}
            details = {k: v for k, v in details.items() if k not in RESERVED_LOG_KEYS}
            details["extra"] = clashes
        return b"%b,%b" % (_ENCODER.encode(line)[:-1], _ENCODER.encode(details)[1:])

    @staticmethod
    def metric_message(envelope: Envelope) -> dict[str, Any]:
        """The raw metric JSON (``metric``, ``type``, ``value``, ``timestamp``, ``tags``)."""
        if not envelope.payload:
            raise ValueError("a metric envelope without a payload")
        return envelope.payload

    # -- the protocol ---------------------------------------------------------------------------

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        outcomes: list[Outcome] = []
        # Per queue, the arguments of one ZADD (score, member) and one HSET (member, message),
        # each pair packed in the wire protocol (RESP) as it comes.
        queues: dict[str, tuple[list[bytes], list[bytes]]] = {}
        for envelope in batch:
            try:
                if envelope.kind == "metric":
                    queue, body = METRICS_QUEUE, self.metric_message(envelope)
                    score = b"%r" % float(body["timestamp"])
                    data = _ENCODER.encode(body)
                else:
                    queue, data = LOGS_QUEUE, self.log_json(envelope)
                    score = b"%r" % envelope.created
            except Exception as exc:  # a message that cannot be written now never will be
                outcomes.append(Rejected(f"redis: cannot encode the message: {exc!r}"))
                continue
            member = _member(envelope.event_id)
            key = member.encode()  # a uuid: always 36 bytes
            pairs = queues.get(queue)
            if pairs is None:
                pairs = queues[queue] = ([], [])
            pairs[0].append(b"$%d\r\n%b\r\n$36\r\n%b\r\n" % (len(score), score, key))
            pairs[1].append(b"$36\r\n%b\r\n$%d\r\n%b\r\n" % (key, len(data), data))
            outcomes.append(Delivered({"queue": queue, "key": member}))
        if not queues:
            return outcomes
        commands: list[bytes] = []
        for queue, (scored, stored) in queues.items():
            commands.append(command(b"ZADD", f"{queue}.keys".encode(), scored))
            commands.append(command(b"HSET", f"{queue}.values".encode(), stored))
        try:
            self._transaction(commands)
        except (self._redis_module.RedisError, OSError, ValueError) as exc:
            # ValueError: redis-py reading a socket that close() shut under it ("I/O operation
            # on closed file"); send() never raises.
            reason = self._failure_reason(exc)
            return [o if isinstance(o, Rejected) else RetryLater(reason) for o in outcomes]
        return outcomes
