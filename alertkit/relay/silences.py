"""Silences, as operators know them from Alertmanager: mute matching events for a while, fleet-wide.

A silence is a set of matchers (``logger=payments type=PaymentDeclined``), an end time, a comment
and who made it. Silences live in Redis beside the stream (``silences``: a hash of id -> JSON), so
every relay honours them; each relay keeps a copy refreshed every ``refresh`` seconds, so matching
costs no round trip. A silenced event is acknowledged without delivery, counted per silence
(``silences:counts``) and kept in the capped ``silenced`` stream, so nothing vanishes without a trace.

Matchers follow Alertmanager's syntax: ``name=value``, ``name!=value``, ``name=~regex``,
``name!~regex`` (the regex anchored at both ends), values optionally in double quotes, all of them
must hold. The names an event can be matched on are in :data:`FIELDS`.

When Redis cannot be reached, :meth:`Silences.match` goes on with the last copy it read, and with
none it silences nothing: an event delivered by mistake is better than one muted by mistake.
"""

from __future__ import annotations

import builtins
import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from alertkit.model.event import Envelope, encode_envelope
from alertkit.model.levels import level_from_number, normalize_level
from alertkit.relay._state import redis_errors
from alertkit.relay.keys import state_key

#: The most entries kept in the ``silenced`` stream (approximately: ``MAXLEN ~``).
SILENCED_MAXLEN = 10_000
#: How long an expired silence is still listed (Alertmanager keeps them 5 days too).
RETENTION = 5 * 86_400.0


def _type(envelope: Envelope) -> list[str]:
    full = envelope.event.event_type
    return [full, full.rsplit(".", 1)[-1]]


#: What a matcher can name, and the value(s) of the event it compares with. ``type`` matches the
#: exception's qualified name or its last part (``PaymentDeclined`` matches
#: ``shop.errors.PaymentDeclined``); ``tag.NAME`` matches the tag ``NAME``.
FIELDS: dict[str, Callable[[Envelope], list[str]]] = {
    "logger": lambda e: [e.logger_name or ""],
    "type": _type,
    "level": lambda e: [level_from_number(e.levelno)],
    "message": lambda e: [e.event.event_message],
    "key": lambda e: [e.incident_key or ""],
    "host": lambda e: [e.event.context_env_hostname or ""],
    "stage": lambda e: [e.event.deployment_stage or ""],
    "version": lambda e: [e.event.context_app_version or ""],
    "kind": lambda e: [e.kind],
}

_MATCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_.-]+)?)(=~|!~|!=|=)(.*)$", re.S)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class Matcher(msgspec.Struct, frozen=True):
    """One condition: ``name op value`` with ``op`` one of ``= != =~ !~``."""

    name: str
    op: str
    value: str

    def holds(self, envelope: Envelope) -> bool:
        if self.name.startswith("tag."):
            values = [envelope.tags.get(self.name[4:], "")]
        else:
            values = FIELDS[self.name](envelope)
        if self.op in ("=", "!="):
            found = self.value in values
        else:
            pattern = re.compile(self.value, re.S)
            found = any(pattern.fullmatch(v) for v in values)
        return found if self.op in ("=", "=~") else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[\w.:/@-]+", value) else '"' + value.replace('"', '\\"') + '"'


class Silence(msgspec.Struct, frozen=True):
    """A silence as stored: ``starts`` and ``ends`` are seconds since the epoch."""

    id: str
    matchers: list[Matcher]
    starts: float
    ends: float
    comment: str = ""
    created_by: str = ""

    def active(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.starts <= now < self.ends

    def matches(self, envelope: Envelope) -> bool:
        return all(m.holds(envelope) for m in self.matchers)


def parse_matchers(text: str) -> list[Matcher]:
    """``'logger=payments type=PaymentDeclined'`` as matchers (space-separated, shell-like quotes).

    Raises:
        ValueError: an empty text, a matcher without an operator, an unknown field, a bad regex.
    """
    try:
        words = shlex.split(text.replace(",", " "))
    except ValueError as exc:
        raise ValueError(f"matchers: {exc}") from None
    if not words:
        raise ValueError("matchers: give at least one, e.g. 'logger=payments type=PaymentDeclined'")
    matchers = []
    for word in words:
        found = _MATCHER.match(word)
        if not found:
            raise ValueError(f"matchers: {word!r} is not name=value, name!=value, =~ or !~")
        name, op, value = found.groups()
        if name not in FIELDS and not name.startswith("tag."):
            raise ValueError(
                f"matchers: unknown field {name!r}; known: {', '.join(FIELDS)}, tag.NAME"
            )
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"matchers: bad regex in {word!r}: {exc}") from None
        elif name == "level":
            try:
                value = normalize_level(value)  # warn, WARNING, critical: the wire names
            except ValueError:
                raise ValueError(
                    f"matchers: {word!r}: level is one of debug, info, warning, error, fatal"
                ) from None
        matchers.append(Matcher(name, op, value))
    return matchers


def parse_duration(text: str) -> float:
    """``2h``, ``30m``, ``1d``, ``1h30m``, ``90s``, ``1w`` as seconds.

    Raises:
        ValueError: anything else, or zero.
    """
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"duration: {text!r} is not like 2h, 30m, 1d or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration: must be more than 0, got {text!r}")
    return seconds


_SILENCE = msgspec.json.Decoder(Silence)


def silence_rows(silences: Silences, *, expired: bool = False) -> list[dict[str, Any]]:
    """The silences with what each muted so far, as plain data (``silence list --json`` and
    ``relay status`` print it).

    Raises:
        redis.RedisError: Redis cannot be reached.
    """
    counts = silences.counts()
    return [
        {
            "id": s.id,
            "matchers": " ".join(str(m) for m in s.matchers),
            "starts": s.starts,
            "ends": s.ends,
            "active": s.active(),
            "comment": s.comment,
            "created_by": s.created_by,
            "muted": counts.get(s.id, 0),
        }
        for s in silences.list(expired=expired)
    ]


def silence_table(rows: list[dict[str, Any]]) -> str:
    """:func:`silence_rows` as the table ``silence list`` and ``relay status`` print."""
    if not rows:
        return "no silences"
    lines = [f"{'id':<16}  {'ends (UTC)':<19}  {'muted':>7}  {'by':<20}  matchers  # comment"]
    for row in rows:
        ends = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["ends"]))
        lines.append(
            f"{row['id']:<16}  {ends:<19}  {row['muted']:>7}  {row['created_by'][:20]:<20}  "
            f"{row['matchers']}"
            + (f"  # {row['comment']}" if row["comment"] else "")
            + ("" if row["active"] else "  (expired)")
        )
    return "\n".join(lines)


class Silences:
    """The silences of one stream, shared through Redis.

    Args:
        redis: a ``redis.Redis`` or ``redis.RedisCluster`` client.
        stream: the event stream's name (its state shares its hash tag).
        refresh: seconds between two reads of the silences by :meth:`match`.
        maxlen: the approximate cap of the ``silenced`` stream.
    """

    def __init__(
        self, redis: Any, stream: str, *, refresh: float = 5.0, maxlen: int = SILENCED_MAXLEN
    ) -> None:
        if refresh <= 0:
            raise ValueError(f"refresh must be positive, got {refresh!r}")
        self.redis = redis
        self.stream = stream
        self.refresh = refresh
        self.maxlen = maxlen
        self._key = state_key(stream, "silences")
        self._counts_key = state_key(stream, "silences:counts")
        self.silenced_key = state_key(stream, "silenced")
        self._errors = redis_errors()
        self._lock = threading.Lock()
        self._cache: builtins.list[Silence] = []
        self._read_at = float("-inf")
        self._stats = {"silenced": 0, "failed_open": 0, "record_errors": 0}

    def add(
        self,
        matchers: list[Matcher] | str,
        duration: float,
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """Store a new silence from now for ``duration`` seconds; every relay sees it within
        its ``refresh``.

        Raises:
            ValueError: no matchers or a duration that is not positive.
            redis.RedisError: Redis cannot be reached (an operator's command should say so).
        """
        if isinstance(matchers, str):
            matchers = parse_matchers(matchers)
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        if not duration > 0:
            raise ValueError(f"duration must be positive, got {duration!r}")
        now = time.time()
        silence = Silence(
            id=secrets.token_hex(8),
            matchers=list(matchers),
            starts=now,
            ends=now + duration,
            comment=comment,
            created_by=created_by,
        )
        self.redis.hset(self._key, silence.id, msgspec.json.encode(silence))
        self._read_at = float("-inf")
        return silence

    def list(self, *, expired: bool = False) -> list[Silence]:
        """Active silences, soonest end first (with ``expired``, those ended in the last 5 days
        too); silences past their retention are deleted here.

        Raises:
            redis.RedisError: Redis cannot be reached.
        """
        now = time.time()
        silences, stale = [], []
        for key, raw in self.redis.hgetall(self._key).items():
            try:
                silence = _SILENCE.decode(raw)
            except msgspec.DecodeError:
                stale.append(key)
                continue
            if silence.ends + RETENTION < now:
                stale.append(key)
            elif silence.active(now) or expired:
                silences.append(silence)
        if stale:
            self.redis.hdel(self._key, *stale)
            self.redis.hdel(self._counts_key, *stale)
        return sorted(silences, key=lambda s: s.ends)

    def expire(self, silence_id: str) -> Silence:
        """End a silence now (it stays listed with ``expired=True``).

        Raises:
            KeyError: no silence has that id.
            redis.RedisError: Redis cannot be reached.
        """
        raw = self.redis.hget(self._key, silence_id)
        if raw is None:
            raise KeyError(silence_id)
        silence = _SILENCE.decode(raw)
        ended = msgspec.structs.replace(silence, ends=min(silence.ends, time.time()))
        self.redis.hset(self._key, silence_id, msgspec.json.encode(ended))
        self._read_at = float("-inf")
        return ended

    def match(self, envelope: Envelope) -> Silence | None:
        """The first active silence that matches ``envelope``, from the copy read at most
        ``refresh`` seconds ago; never raises for Redis (fails open, counted)."""
        silences = self._current()
        now = time.time()
        for silence in silences:
            if silence.active(now) and silence.matches(envelope):
                return silence
        return None

    def _current(self) -> builtins.list[Silence]:
        with self._lock:
            if time.monotonic() - self._read_at < self.refresh:
                return self._cache
            self._read_at = time.monotonic()  # one reader per refresh, even when Redis is down
        try:
            fresh = self.list()
        except self._errors:
            with self._lock:
                self._stats["failed_open"] += 1
                return self._cache
        with self._lock:
            self._cache = fresh
        return fresh

    def record(self, silence: Silence, envelope: Envelope, entry_id: str | bytes) -> None:
        """Count ``envelope`` against ``silence`` and keep it in the ``silenced`` stream.

        Raises:
            redis.RedisError: Redis cannot be reached; the caller then leaves the entry pending
                (not acknowledged), to be silenced again later.
        """
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self._counts_key, silence.id, 1)
        pipe.xadd(
            self.silenced_key,
            {
                "silence": silence.id,
                "entry": entry,
                "event_id": envelope.event_id,
                "envelope": encode_envelope(envelope),
            },
            maxlen=self.maxlen,
            approximate=True,
        )
        try:
            pipe.execute()
        except self._errors:
            with self._lock:
                self._stats["record_errors"] += 1
            raise
        with self._lock:
            self._stats["silenced"] += 1

    def screen(self, envelope: Envelope, entry_id: str) -> str | None:
        """The relay's screen (:class:`~alertkit.relay.gates.Screen`): ``"silenced"`` when an
        active silence matches (the event is recorded, and the relay acknowledges the entry
        without delivery); None to deliver, also when the record cannot be written (Redis
        down: a duplicate alert beats a silent loss)."""
        silence = self.match(envelope)
        if silence is None:
            return None
        try:
            self.record(silence, envelope, entry_id)
        except self._errors:
            return None
        return "silenced"

    def counts(self) -> dict[str, int]:
        """Events silenced so far, per silence id, fleet-wide.

        Raises:
            redis.RedisError: Redis cannot be reached.
        """
        raw = self.redis.hgetall(self._counts_key)
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    def stats(self) -> dict[str, int]:
        """This relay's counts: ``silenced`` events, ``failed_open`` (refreshes that could not
        reach Redis), ``record_errors``."""
        with self._lock:
            return dict(self._stats)
