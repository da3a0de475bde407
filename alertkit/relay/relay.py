"""The relay: a Redis Stream consumer that delivers each entry through alertkit's own pipeline.

A relay is an ordinary pipeline (the backends, retry policy, circuit breakers, spool and storm
control the apps use) whose capture stage reads a consumer group instead of a logger::

    XREADGROUP -> decode -> screen (silences) -> pipeline: storm control -> per-destination
    queue -> gate (rate limit) -> backend.send -> results -> XACK (+ dead letters) or left pending

At least once: an entry is acknowledged only when every destination has an outcome (delivered,
rejected -- then it is dead-lettered with the reason first -- or spooled by the relay's spool). An
entry the pipeline gave up on without an outcome stays pending: after ``claim_after`` seconds a
live relay (this one included) claims it with ``XAUTOCLAIM`` and delivers it again; once it has
been delivered ``max_deliveries`` times it is dead-lettered instead. While a relay is still working
on an entry (a retry waiting for its backoff) it refreshes the entry's idle time, so a slow
destination does not make other relays take it over. Replays keep the envelope, event id
included, so PagerDuty's dedup key stays the same.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import msgspec

from alertkit.backends.base import Backend, ClientContext
from alertkit.backends.redis_stream import RedisStreamBackend
from alertkit.capture.options import make_backends, open_spool
from alertkit.delivery.pipeline import Pipeline, Results
from alertkit.guard import capture_internal_exceptions
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope, decode_envelope
from alertkit.model.retry import RetryPolicy
from alertkit.policy.storm import StormControl
from alertkit.relay.fleet import FleetState
from alertkit.relay.gates import GatedBackend, Screen, SendGate
from alertkit.relay.outcomes import Held, settle
from alertkit.relay.stream import Entry, GroupConsumer, dead_letter

if TYPE_CHECKING:
    import os as _os

log = logging.getLogger("alertkit.relay")

#: Counters of :meth:`Relay.stats` besides the destinations.
COUNTERS = (
    "read",
    "claimed",
    "acked",
    "delivered",
    "dead_lettered",
    "screened",
    "left_pending",
    "redis_errors",
)


class Relay:
    """Delivers the entries of a Redis Stream to ``backends``, sharing the work with every
    relay of the same consumer group.

    Args:
        source: the stream's URL, ``redis-stream://[:password@]host:port/db?stream=NAME``
            (``rediss-stream://`` for TLS), or a :class:`RedisStreamBackend`.
        backends: destination URLs or objects; default ``ALERTKIT_BACKENDS``.
        group: the consumer group every relay of the fleet joins.
        consumer: this relay's name in the group (default ``<hostname>-<pid>``); a relay
            restarted under the same name first delivers what it held.
        claim_after: seconds an entry may sit unacknowledged in a silent consumer (a relay
            that died) before another relay takes it over.
        max_deliveries: deliveries of one entry without an outcome before it is dead-lettered.
        spool: keep what cannot be delivered now in the relay's SQLite spool (then the entry is
            acknowledged and the spool replays it); ``spool_path`` implies it.
        retry: the retry policy of every destination.
        storm: storm control (an object with the interface of
            :class:`~alertkit.policy.storm.StormControl`); default the fleet's
            (:class:`~alertkit.relay.storm.SharedStormControl`) of ``storm_window``.
        storm_window: seconds of the default storm control; 0: none.
        screen: asked per entry before delivery; default the fleet's silences
            (:meth:`~alertkit.relay.silences.Silences.screen`); see :mod:`alertkit.relay.gates`.
        gate: asked per destination before each send; default the fleet's rate limits
            (:class:`~alertkit.relay.ratelimit.SharedRateLimit`).
        shared: keep storm windows, silences and rate limits in Redis with the other relays
            (:mod:`alertkit.relay.fleet`); False: this relay alone (local storm control, no
            silences, no shared limits).
        batch: entries read at a time; also bounds the entries in flight (``4 * batch``).
        stop_timeout: the budget of a stop asked for by a signal (``request_stop``).

    Raises:
        ConfigError: a bad source, destination or option (the message names it).
    """

    def __init__(
        self,
        source: str | RedisStreamBackend,
        backends: Sequence[str | Backend] | None = None,
        *,
        group: str = "alertkit",
        consumer: str | None = None,
        claim_after: float = 60.0,
        max_deliveries: int = 5,
        spool: bool = False,
        spool_path: str | _os.PathLike[str] | None = None,
        retry: RetryPolicy | None = None,
        storm: StormControl | None = None,
        storm_window: float = 60.0,
        screen: Screen | None = None,
        gate: SendGate | None = None,
        batch: int = 100,
        stop_timeout: float = 10.0,
        shared: bool = True,
    ) -> None:
        self.source = _source(source)
        for option, value in (("claim_after", claim_after), ("stop_timeout", stop_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"relay: {option} must be a positive number, got {value!r}")
        for option, value in (("max_deliveries", max_deliveries), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"relay: {option} must be a whole number >= 1, got {value!r}")
        if not isinstance(group, str) or not group:
            raise ConfigError("relay: group must be a non-empty name")
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_after = float(claim_after)
        self.max_deliveries = max_deliveries
        self.batch = batch
        self.stop_timeout = float(stop_timeout)
        _storm(storm_window)  # checked before anything is opened
        self.fleet = FleetState(self.source, storm_window) if shared else None
        if self.fleet is not None:
            screen = screen if screen is not None else self.fleet.silences.screen
            gate = gate if gate is not None else self.fleet.rate_limit
            if storm is None and self.fleet.storm is not None:
                storm = self.fleet.storm
        self.screen = screen
        self._stopping = threading.Event()  # stop reading; set by stop() or a signal
        self._stopped = threading.Event()  # run() has returned
        self._thread: threading.Thread | None = None
        self._ran = False
        # XREADGROUP's BLOCK, within the connection's own socket timeout.
        self._block = min(0.5, self.source.socket_timeout / 2)
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._screened: dict[str, int] = {}
        self._held: dict[str, Held] = {}
        self._done: queue.SimpleQueue[tuple[str, Results]] = queue.SimpleQueue()
        self._unsettled: list[tuple[str, Results]] = []  # outcomes whose XACK failed: again
        self.destinations = self._destinations(backends, gate)
        self.pipeline = Pipeline(
            self.destinations,
            policy=retry or RetryPolicy(),
            queue_size=max(10_000, 8 * batch),
            batch_size=None,
            threads=4,
            storm=storm if storm is not None else _storm(storm_window),
            spool=open_spool(spool, spool_path),
        )
        self.consumer_group = GroupConsumer(self.source, group, self.consumer)

    def _destinations(
        self, specs: Sequence[str | Backend] | None, gate: SendGate | None
    ) -> list[Backend]:
        if specs is None and not os.environ.get("ALERTKIT_BACKENDS", "").strip():
            raise ConfigError("relay: no destination: pass --to URL or set ALERTKIT_BACKENDS")
        try:
            # The event API's key: each event carries its app's; ALERTKIT_API_KEY, as for a
            # client, when a destination needs one of its own.
            context = ClientContext(
                api_key=os.environ.get("ALERTKIT_API_KEY") or None,
                hostname=socket.gethostname(),
            )
            made = make_backends(specs, context)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"relay: --to: {exc}") from None
        for backend in made:
            if isinstance(backend, RedisStreamBackend) and _same_stream(backend, self.source):
                raise ConfigError("relay: --to names the stream it reads (--from): a loop")
        if gate is None:
            return made
        return [GatedBackend(backend, gate, self._stopping) for backend in made]

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a daemon thread; :meth:`stop` ends it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="alertkit-relay", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler): it stops reading, finishes or
        leaves pending what it holds within ``stop_timeout``, and returns."""
        self._stopping.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop within ``timeout`` seconds (default ``stop_timeout``); True if it had stopped.

        Never acknowledges an entry that was not delivered: what is not done by then stays
        pending for another relay (or this one's next start).
        """
        if timeout is not None:
            self.stop_timeout = max(0.1, float(timeout))
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.stop_timeout + 2.0)
            return not self._thread.is_alive()
        if not self._ran:  # never run: release the pipeline and the connections now
            self._ran = True
            self.run()
        return self._stopped.wait(self.stop_timeout + 2.0)

    def run(self) -> None:
        """Deliver until :meth:`stop` or :meth:`request_stop`; blocks. Redis outages are waited
        out (counted in ``redis_errors``), never raised."""
        self._ran = True
        try:
            self._loop()
        finally:
            self._finish()
            self._stopped.set()

    def _loop(self) -> None:
        started = False
        touch_every = max(0.05, self.claim_after / 3)
        claim_every = max(0.05, min(self.claim_after / 2, 5.0))
        next_touch = next_claim = 0.0
        pause = 0.0
        while not self._stopping.is_set():
            if pause:
                self._stopping.wait(pause)
            try:
                if not started:
                    self.consumer_group.ensure_group()
                    self._dispatch(self.consumer_group.read(self.batch * 4, 0, history=True))
                    started = True
                self._settle_done()
                now = time.monotonic()
                if now >= next_touch:
                    self.consumer_group.touch(list(self._held))
                    next_touch = now + touch_every
                if now >= next_claim:
                    self._claim()
                    next_claim = now + claim_every
                room = 4 * self.batch - len(self._held)
                if room > 0:
                    entries = self.consumer_group.read(min(room, self.batch), self._block)
                    self._counts["read"] += len(entries)
                    self._dispatch(entries)
                else:
                    self._wait_done(0.5)
                pause = 0.0
            except self.consumer_group.errors as exc:
                if "NOGROUP" in str(exc):  # Redis restarted empty, or the stream was deleted
                    started = False
                self._counts["redis_errors"] += 1
                if (
                    self._counts["redis_errors"] in (1, 10)
                    or self._counts["redis_errors"] % 100 == 0
                ):
                    log.warning(
                        "relay: Redis: %s", self.consumer_group.mask(f"{type(exc).__name__}: {exc}")
                    )
                pause = min(2.0, max(0.2, pause * 2))

    def _claim(self) -> None:
        """Take over entries a dead relay left pending; dead-letter those delivered too often."""
        claimed = self.consumer_group.claim_idle(self.claim_after, self.batch)
        fresh: list[Entry] = []
        letters = []
        for (entry_id, fields), deliveries in claimed:
            if entry_id in self._held:
                continue  # ours, still being delivered (its idle time lapsed between touches)
            if fields is not None and deliveries > self.max_deliveries:
                blob = fields.get(b"envelope", b"")
                letters.append(
                    dead_letter(
                        entry_id,
                        f"delivered {deliveries - 1} times without an outcome",
                        consumer=self.consumer,
                        blob=blob,
                        event_id=_text(fields.get(b"id", b"")),
                    )
                )
                continue
            fresh.append((entry_id, fields))
        if letters:
            self.consumer_group.settle([letter["entry"] for letter in letters], letters)
            self._counts["dead_lettered"] += len(letters)
            self._counts["acked"] += len(letters)
        self._counts["claimed"] += len(fresh)
        self._dispatch(fresh)

    def _dispatch(self, entries: Sequence[Entry]) -> None:
        """Hand entries to the pipeline; settle at once those that need no delivery."""
        acks: list[str] = []
        letters = []
        for entry_id, fields in entries:
            if entry_id in self._held:
                continue
            blob = fields.get(b"envelope") if fields else None
            if blob is None:
                reason = "not in the stream any more (trimmed by MAXLEN before delivery)"
                if fields:
                    reason = "not an alertkit envelope (no 'envelope' field)"
                letters.append(dead_letter(entry_id, reason, consumer=self.consumer))
                continue
            try:
                envelope = decode_envelope(blob)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                letters.append(
                    dead_letter(
                        entry_id,
                        f"cannot decode the envelope: {exc}",
                        consumer=self.consumer,
                        blob=blob,
                    )
                )
                continue
            # Storm control is the relays' (fleet-wide) decision, not the producing app's.
            envelope.storm_suppressed = envelope.digest = False
            if self._screen(envelope, entry_id) is not None:
                acks.append(entry_id)
                continue
            self._held[entry_id] = Held(blob, envelope.event_id)
            future: Future[Results] = Future()
            future.add_done_callback(functools.partial(self._answered, entry_id))
            self.pipeline.submit(_captured(envelope), future)
        if acks or letters:
            self.consumer_group.settle([*acks, *(letter["entry"] for letter in letters)], letters)
            self._counts["acked"] += len(acks) + len(letters)
            self._counts["dead_lettered"] += len(letters)

    def _answered(self, entry_id: str, future: Future[Results]) -> None:
        """Every destination has answered (on a worker thread): the loop settles it."""
        self._done.put((entry_id, future.result()))

    def _screen(self, envelope: Envelope, entry_id: str) -> str | None:
        if self.screen is None:
            return None
        reason = None
        with capture_internal_exceptions():  # a failing screen delivers: a duplicate, not a miss
            reason = self.screen(envelope, entry_id)
        if reason is not None:
            self._counts["screened"] += 1
            self._screened[reason] = self._screened.get(reason, 0) + 1
        return reason

    # -- outcomes --------------------------------------------------------------------------------

    def _wait_done(self, timeout: float) -> None:
        try:
            item = self._done.get(timeout=timeout)
        except queue.Empty:
            return
        self._done.put(item)
        self._settle_done()

    def _settle_done(self) -> None:
        """Acknowledge every entry whose destinations all have an outcome, with dead letters
        for rejections; leave pending those the pipeline gave up on."""
        done, self._unsettled = self._unsettled, []
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                break
        if not done:
            return
        plan = settle(done, self._held, self.consumer)
        for entry_id in plan.left_pending:  # no outcome: claimed again after claim_after
            del self._held[entry_id]
        self._counts["left_pending"] += len(plan.left_pending)
        if not plan.acks:
            return
        try:
            self.consumer_group.settle(plan.acks, plan.letters, plan.delivered)
        except self.consumer_group.errors:
            acked = set(plan.acks)
            self._unsettled = [(i, r) for i, r in done if i in acked]  # again, next round
            raise
        for entry_id in plan.acks:
            del self._held[entry_id]
        self._counts["acked"] += len(plan.acks)
        self._counts["dead_lettered"] += len(plan.letters)
        rejected = {letter["entry"] for letter in plan.letters}
        self._counts["delivered"] += len(plan.acks) - len(rejected)

    def _finish(self) -> None:
        """Stop within the budget: deliver what is held, give up on the rest (spooled if the relay
        has a spool, else left pending), acknowledge what had an outcome."""
        deadline = time.monotonic() + self.stop_timeout
        reserve = min(1.0, self.stop_timeout / 4)
        while self._held and time.monotonic() < deadline - 2 * reserve:
            try:
                self._wait_done(0.05)
            except self.consumer_group.errors:  # Redis away: what is held stays pending
                self._stopping.wait(0.1)
        self.pipeline.shutdown(max(0.0, deadline - reserve - time.monotonic()))
        try:
            self._settle_done()
        except self.consumer_group.errors as exc:
            log.warning(
                "relay: could not acknowledge at stop (left pending): %s",
                self.consumer_group.mask(f"{type(exc).__name__}: {exc}"),
            )
        self._counts["left_pending"] += len(self._held)
        self._held.clear()
        with capture_internal_exceptions():
            self.consumer_group.close()
            self.source.close()
        if self.fleet is not None:
            with capture_internal_exceptions():
                self.fleet.close()

    # -- visibility ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This relay's counts (read, claimed, acked, delivered, dead_lettered, screened and why,
        left_pending, redis_errors), the entries it holds, and each destination's stats."""
        return {
            **self._counts,
            "held": len(self._held),
            "screened_by": dict(self._screened),
            "destinations": self.pipeline.stats(),
            "fleet": self.fleet.stats() if self.fleet is not None else {},
        }

    def __repr__(self) -> str:
        return (
            f"<Relay {self.source.mask(self.source.describe())} group={self.group!r} "
            f"consumer={self.consumer!r}>"
        )


def _source(source: str | RedisStreamBackend) -> RedisStreamBackend:
    if isinstance(source, RedisStreamBackend):
        return source
    if not isinstance(source, str) or not source.startswith(("redis-stream:", "rediss-stream:")):
        raise ConfigError(
            "relay: --from must be a redis-stream:// or rediss-stream:// URL "
            "(redis-stream://host:6379/0?stream=alertkit:events)"
        )
    built = RedisStreamBackend.from_url(source)
    assert isinstance(built, RedisStreamBackend)
    return built


def _same_stream(a: RedisStreamBackend, b: RedisStreamBackend) -> bool:
    return (a.host, a.port, a.db, a.key) == (b.host, b.port, b.db, b.key)


def _storm(window: float) -> StormControl | None:
    if isinstance(window, bool) or not isinstance(window, int | float) or window < 0:
        raise ConfigError(f"relay: storm_window must be a number >= 0, got {window!r}")
    return StormControl(float(window)) if window else None


def _captured(envelope: Envelope) -> Any:
    return lambda: envelope


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
