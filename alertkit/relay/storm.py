"""Storm control shared by every relay of a stream: one first alert and one digest per storm.

:class:`~alertkit.policy.storm.StormControl` counts in one process, so 200 processes hitting the
same bug send 200 first notifications and 200 digests. Here the window of each fingerprint (the same
grouping, :func:`~alertkit.policy.storm.fingerprint`) lives in Redis and every decision is one Lua
script, atomic on the server, so with any number of relays:

* the first event of a storm opens the window and goes out; every repeat inside it increments the
  window's count and is marked ``storm_suppressed`` (storm-controlled backends skip it);
* when the window ends, exactly one relay claims it (another script that reads and deletes it) and
  emits the digest, whose count is the fleet-wide total.

Keys (one hash tag with the stream, so Redis Cluster serves the scripts): ``storm:w:<sha1>``, a hash
``ends, started, suppressed, last`` per open window (``last``: the latest repeat, for the digest's
text); ``storm:due``, a sorted set of windows with repeats by end time. An ended window that a new
event finds still unclaimed is renamed ``storm:w:<sha1>:<ends>`` and stays in ``storm:due``, so its
count is never lost. Times are the Redis server's (``TIME``): the relays' clocks need not agree.

When Redis cannot be reached the event is delivered unmarked and counted in :meth:`stats` as
``failed_open``: a duplicate alert is better than a missed one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from alertkit.model.event import Envelope, decode_envelope, encode_envelope
from alertkit.policy.storm import StormControl, digest_of, fingerprint
from alertkit.relay._state import Outage, redis_errors
from alertkit.relay.keys import state_key

#: How long a window with repeats waits in Redis for a relay to claim its digest (a day).
KEEP_SECONDS = 86_400.0
#: Digests claimed per script call.
CLAIM_BATCH = 100

# KEYS: window, due. ARGV: window ms, keep ms, the event (encode_envelope's JSON).
# Returns {suppressed?, repeats so far, ms until the window ends}.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(redis.call('HGET', KEYS[1], 'ends'))
if ends and now < ends then
  local n = redis.call('HINCRBY', KEYS[1], 'suppressed', 1)
  redis.call('HSET', KEYS[1], 'last', ARGV[3])
  if n == 1 then
    redis.call('ZADD', KEYS[2], ends, KEYS[1])
    redis.call('PEXPIRE', KEYS[1], ends - now + tonumber(ARGV[2]))
  end
  return {1, n, ends - now}
end
if ends then
  if tonumber(redis.call('HGET', KEYS[1], 'suppressed') or '0') > 0 then
    local ended = KEYS[1] .. ':' .. ends
    redis.call('RENAME', KEYS[1], ended)
    redis.call('ZREM', KEYS[2], KEYS[1])
    redis.call('ZADD', KEYS[2], ends, ended)
  else
    redis.call('DEL', KEYS[1])
  end
end
local window = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'ends', now + window, 'started', now, 'suppressed', 0)
redis.call('PEXPIRE', KEYS[1], window)
return {0, 0, window}
"""

# KEYS: due. ARGV: '1' to claim windows still open too, the most to claim.
# Returns {{suppressed, last, started, ends}..., ms until the next window ends or -1, now}.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local upto = now
if ARGV[1] == '1' then upto = '+inf' end
local claimed = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', upto, 'LIMIT', 0, tonumber(ARGV[2]))) do
  local w = redis.call('HMGET', key, 'suppressed', 'last', 'started', 'ends')
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
  if w[1] and tonumber(w[1]) > 0 and w[2] then
    table.insert(claimed, {w[1], w[2], w[3], w[4]})
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if first[2] then wait = math.max(0, tonumber(first[2]) - now) end
return {claimed, wait, now}
"""


class SharedStormControl(StormControl):
    """Fleet-wide storm control: a :class:`~alertkit.policy.storm.StormControl` (the pipeline
    takes it in its place) whose windows live in Redis instead of this process.

    Args:
        redis: a ``redis.Redis`` or ``redis.RedisCluster`` client (short socket timeouts: every
            event waits for one script).
        stream: the event stream's name; the state lives beside it (same hash tag).
        window: seconds of a storm window (0 disables, like ``StormControl``).
        poll: the longest wait between two looks at the fleet's due windows, so that a window
            whose repeats this relay never saw is still digested (by whichever relay looks first).
        flush_on_stop: ``due_digests(flush_all=True)`` (a relay stopping) also claims the windows
            still open. Off by default: the other relays go on counting them, and a window left
            by the last relay is claimed by the next one to start (it is kept a day).

    Raises:
        ValueError: a negative window or a poll that is not positive.
    """

    def __init__(
        self,
        redis: Any,
        stream: str,
        window: float = 60.0,
        *,
        poll: float = 5.0,
        flush_on_stop: bool = False,
    ) -> None:
        if window < 0:
            raise ValueError(f"window must not be negative, got {window!r}")
        if poll <= 0:
            raise ValueError(f"poll must be positive, got {poll!r}")
        super().__init__(window)
        self.redis = redis
        self.stream = stream
        self.poll = poll
        self.flush_on_stop = flush_on_stop
        self._due_key = state_key(stream, "storm:due")
        self._hit = redis.register_script(_HIT)
        self._claim = redis.register_script(_CLAIM)
        self._errors = redis_errors()
        self._outage = Outage()
        self._lock = threading.Lock()
        self._next_look = time.monotonic()  # when to look at the fleet's due windows next
        self._stats = {"first": 0, "suppressed": 0, "digests": 0, "failed_open": 0, "errors": 0}

    def _window_key(self, envelope: Envelope) -> str:
        digest = hashlib.sha1(fingerprint(envelope).encode("utf-8", "replace")).hexdigest()
        return state_key(self.stream, f"storm:w:{digest}")

    def __call__(self, envelope: Envelope) -> Envelope:
        """Mark ``envelope`` ``storm_suppressed`` when it repeats an open window of the fleet."""
        if self.window <= 0 or envelope.kind != "event" or envelope.request_log is not None:
            return envelope
        if self._outage.down():
            self._count("failed_open")
            return envelope
        args = (int(self.window * 1000), int(KEEP_SECONDS * 1000), encode_envelope(envelope))
        try:
            suppressed, _count, remaining = self._hit(
                keys=[self._window_key(envelope), self._due_key], args=args
            )
        except self._errors:
            self._outage.failed()
            self._count("failed_open")
            return envelope
        if suppressed:
            envelope.storm_suppressed = True
            self._count("suppressed")
            self._look_by(time.monotonic() + int(remaining) / 1000)
        else:
            self._count("first")
        return envelope

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[name] += amount

    def _look_by(self, when: float) -> None:
        with self._lock:
            self._next_look = min(self._next_look, when)

    def next_due(self) -> float | None:
        """Seconds until this relay should call :meth:`due_digests` (None when disabled)."""
        if self.window <= 0:
            return None
        return max(0.0, self._next_look - time.monotonic())

    def due_digests(self, *, flush_all: bool = False) -> list[Envelope]:
        """Digests of the fleet's ended windows that this relay claimed (each goes to one relay).

        With ``flush_all`` and ``flush_on_stop``, open windows are claimed too. On a Redis error
        nothing is claimed now (the windows wait in Redis) and the error is counted.
        """
        if self.window <= 0:
            return []
        now = time.monotonic()
        if not flush_all and now < self._next_look:
            return []
        everything = flush_all and self.flush_on_stop
        digests: list[Envelope] = []
        wait = -1
        try:
            if self._outage.down():
                raise ConnectionError("Redis failed a moment ago")
            while True:
                claimed, wait, server_now = self._claim(
                    keys=[self._due_key], args=["1" if everything else "0", CLAIM_BATCH]
                )
                digests.extend(self._fleet_digest(window, int(server_now)) for window in claimed)
                if len(claimed) < CLAIM_BATCH:
                    break
        except self._errors:
            self._outage.failed()
            self._count("errors")
        until = self.poll if int(wait) < 0 else min(self.poll, int(wait) / 1000)
        with self._lock:
            self._next_look = time.monotonic() + until
        self._count("digests", len(digests))
        return digests

    def _fleet_digest(self, window: list[bytes], now: int) -> Envelope:
        suppressed, last, started, ends = window
        span = (min(int(ends), now) - int(started)) / 1000 if started and ends else self.window
        return digest_of(decode_envelope(last), int(suppressed) + 1, span)

    def stats(self) -> dict[str, int]:
        """Counts since start: ``first`` alerts, ``suppressed`` repeats, ``digests`` claimed,
        ``failed_open`` (Redis unreachable: delivered unmarked), ``errors`` (claims that failed)."""
        with self._lock:
            return dict(self._stats)
