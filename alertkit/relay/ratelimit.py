"""Rate limits shared by every relay: one token bucket per destination key, kept in Redis.

Each relay paces its own sends (a backend's ``rate_limit``), but two relays each at PagerDuty's
limit are twice over it. Here the bucket of a destination key (a PagerDuty routing key, a Slack
webhook, a Telegram chat, a WhatsApp recipient) is a Redis hash updated by one Lua script, so the
whole fleet together stays under the limit. A relay without a token waits the time the script says,
leaving its stream entry pending; nothing is dropped. A 429 that comes anyway is retried with its
``Retry-After`` by the backend's worker as usual.

Default limits, from each service's published numbers (``?rate=N/s`` or ``N/min`` on the ``--to``
URL overrides them, see :func:`~alertkit.backends._options.read_rate`):

* PagerDuty Events API v2: 120 events a minute per integration (routing) key;
* Slack incoming webhooks: one message a second per webhook (short bursts tolerated);
* Telegram bots: one message a second per chat, 20 a minute in a group (negative chat id);
* WhatsApp Cloud API: one message every 6 seconds to the same recipient (the "pair rate limit",
  error 131056; the number's throughput, 80 messages a second, is far above it).

The bucket holds ``burst`` tokens (1 by default: evenly spaced sends, so a service that counts in
any window of its own sees at most the rate plus one). Redis keys hold a hash of the destination
key, never the key itself (routing keys and webhook URLs are credentials). Times are Redis's own.

When Redis cannot be reached :meth:`SharedRateLimit.take` gives the token (fails open, counted):
the relay's own pacing and the 429 retry still hold.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

from alertkit.model.event import Envelope
from alertkit.relay._state import Outage, redis_errors
from alertkit.relay.keys import state_key

# KEYS: bucket. ARGV: rate (tokens/s), burst, cost. Returns the seconds to wait, as text ('0': taken).
# A cost above the tokens left is taken as a debt (the bucket goes below 0) as long as one token
# is there, so a batch bigger than the bucket still goes, and the next sender waits it off.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= math.min(1, cost) then
  tokens = tokens - cost
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""

#: ``(events, seconds)`` by URL scheme when the backend has no ``rate`` of its own.
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "pagerduty": (120, 60.0),
    "slack": (1, 1.0),
    "tgram": (1, 1.0),
    "whatsapp": (1, 6.0),
}
#: A Telegram group or channel (its chat id is negative): 20 messages a minute.
TELEGRAM_GROUP_LIMIT = (20, 60.0)


class SharedRateLimit:
    """Token buckets in Redis shared by every relay of ``stream``.

    Args:
        redis: a ``redis.Redis`` or ``redis.RedisCluster`` client.
        stream: the event stream's name (the buckets share its hash tag).
    """

    def __init__(self, redis: Any, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self._take = redis.register_script(_TAKE)
        self._errors = redis_errors()
        self._outage = Outage()
        self._lock = threading.Lock()
        self._stats = {"taken": 0, "waits": 0, "failed_open": 0}

    def take(self, key: str, rate: float, burst: float | None = None, cost: int = 1) -> float:
        """Take ``cost`` tokens of ``key``'s bucket: 0.0 when taken, else the seconds to wait
        before asking again (nothing was taken). A cost above what the bucket holds is taken as
        a debt that the next takers wait off, so the average rate holds.

        Args:
            key: the destination key (hashed before it reaches Redis).
            rate: tokens per second.
            burst: the bucket's size (default 1).
            cost: tokens to take (a batch's events).

        Raises:
            ValueError: a rate or burst that is not positive.
        """
        size = 1.0 if burst is None else float(burst)
        if not rate > 0 or not size > 0:
            raise ValueError(f"rate and burst must be positive, got {rate!r} and {burst!r}")
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]
        if self._outage.down():
            self._count("failed_open")
            return 0.0
        try:
            answer = self._take(
                keys=[state_key(self.stream, f"rate:{digest}")],
                args=[repr(rate), repr(size), max(1, cost)],
            )
        except self._errors:
            self._outage.failed()
            self._count("failed_open")
            return 0.0
        wait = float(answer)
        self._count("waits" if wait > 0 else "taken")
        return wait

    def take_for(self, backend: Any, count: int = 1) -> float:
        """:meth:`take` ``count`` tokens for a backend's destination at its limit; 0.0 for a
        backend with none."""
        found = destination(backend)
        if found is None:
            return 0.0
        key, (events, seconds) = found
        return self.take(key, events / seconds, cost=count)

    def wait(self, backend: Any, batch: Sequence[Envelope]) -> float:
        """The relay's send gate (:class:`~alertkit.relay.gates.SendGate`): seconds before
        ``batch`` may go to ``backend``; 0.0 means its tokens are taken, go now."""
        return self.take_for(backend, len(batch))

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def stats(self) -> dict[str, int]:
        """Counts since start: tokens ``taken``, ``waits`` answered, ``failed_open`` takes."""
        with self._lock:
            return dict(self._stats)


def destination(backend: Any) -> tuple[str, tuple[int, float]] | None:
    """``(destination key, (events, seconds))`` of a backend, or None when it has no shared limit.

    The key names what the service limits (routing key, webhook, chat, recipient); the limit is the
    backend's own ``rate_limit`` when its URL or constructor set one, else :data:`DEFAULT_LIMITS`.
    """
    scheme = getattr(backend, "scheme", "")
    own: dict[str, Any] = getattr(backend, "__dict__", {})  # set on the instance, not defaults
    if scheme == "pagerduty":
        key = f"pagerduty:{backend.routing_key}"
    elif scheme == "slack":
        key = f"slack:{backend.webhook_url}"
    elif scheme == "tgram":
        key = f"tgram:{backend.bot_token}:{backend.chat_id}"
    elif scheme == "whatsapp":
        key = f"whatsapp:{backend.api_url}:{backend.to}"
    elif own.get("rate_limit"):  # any other destination paced by its URL or constructor
        key = f"{scheme}:{own.get('url') or backend.name}"
    else:
        return None
    limit = own.get("rate_limit")
    if not limit:
        limit = DEFAULT_LIMITS[scheme]
        if scheme == "tgram" and str(backend.chat_id).startswith("-"):
            limit = TELEGRAM_GROUP_LIMIT
    return key, (int(limit[0]), float(limit[1]))
