"""Fleet-wide storm control against a real redis-server: two SharedStormControl objects stand for
two relays sharing one stream's state."""

from __future__ import annotations

import threading
import time

import pytest

from alertkit.relay._state import RETRY_AFTER
from alertkit.relay.storm import SharedStormControl
from tests.relay._events import envelope
from tests.standins.redis import RedisServer, quick_client

STREAM = "alertkit:events"


def relays(server: RedisServer, window: float, **options: object) -> list[SharedStormControl]:
    return [
        SharedStormControl(server.client(), STREAM, window, poll=0.05, **options)  # type: ignore[arg-type]
        for _ in range(2)
    ]


def wait_for_digests(
    controls: list[SharedStormControl], expected: int = 1, seconds: float = 5.0
) -> list:
    """The digests the relays claim until ``expected`` came (and a moment more, for extras)."""
    deadline = time.monotonic() + seconds
    digests: list = []
    while time.monotonic() < deadline:
        for control in controls:
            digests.extend(control.due_digests())
        if len(digests) >= expected:
            time.sleep(0.2)  # any second digest would come now
            for control in controls:
                digests.extend(control.due_digests())
            return digests
        time.sleep(0.02)
    return digests


def test_two_relays_send_one_first_alert_and_one_digest_with_the_fleet_total(
    redis_server: RedisServer,
) -> None:
    controls = relays(redis_server, window=1.5)
    marked: list[bool] = []
    lock = threading.Lock()

    def relay(control: SharedStormControl, count: int) -> None:
        for i in range(count):
            seen = control(envelope(f"Payment declined for order {i}"))
            with lock:
                marked.append(seen.storm_suppressed)

    threads = [threading.Thread(target=relay, args=(c, 500)) for c in controls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert marked.count(False) == 1, "exactly one first notification across both relays"
    assert marked.count(True) == 999
    digests = wait_for_digests(controls)
    assert len(digests) == 1, "one relay claimed the digest, the other got nothing"
    assert digests[0].digest and digests[0].details["storm_count"] == 1000
    assert "x 1,000 in the last" in digests[0].event.event_message
    assert sum(c.stats()["digests"] for c in controls) == 1


def test_other_fingerprints_and_kinds_are_not_grouped(redis_server: RedisServer) -> None:
    control = relays(redis_server, window=60)[0]
    assert not control(envelope(event_type="a.Timeout", template="t")).storm_suppressed
    assert not control(envelope(event_type="b.Refused", template="t")).storm_suppressed
    metric = envelope()
    metric.kind = "metric"
    assert not control(metric).storm_suppressed and not control(metric).storm_suppressed
    assert control(envelope(event_type="a.Timeout", template="t")).storm_suppressed


def test_a_window_ended_but_unclaimed_keeps_its_count_when_the_storm_goes_on(
    redis_server: RedisServer,
) -> None:
    first, second = relays(redis_server, window=0.3)
    for _ in range(3):
        first(envelope())
    time.sleep(0.4)  # the window ended and nobody asked for digests yet
    assert not second(envelope()).storm_suppressed, "a new window opens with a first alert"
    assert second(envelope()).storm_suppressed
    digests = wait_for_digests([first, second], expected=2)
    counts = sorted(d.details["storm_count"] for d in digests)
    assert counts == [2, 3], "the ended window's digest (3) and the new one's (2), each once"


def test_a_relay_that_saw_no_repeat_still_claims_the_digest(redis_server: RedisServer) -> None:
    seen, idle = relays(redis_server, window=0.3)
    for _ in range(4):
        seen(envelope())
    assert idle.next_due() is not None and idle.next_due() <= idle.poll
    digests = wait_for_digests([idle])
    assert [d.details["storm_count"] for d in digests] == [4]
    assert seen.due_digests(flush_all=True) == []


def test_stopping_leaves_open_windows_to_the_fleet_unless_told(redis_server: RedisServer) -> None:
    keeping, flushing = relays(redis_server, window=60)
    keeping(envelope())
    keeping(envelope())
    assert keeping.due_digests(flush_all=True) == [], "other relays still count this window"
    flushing.flush_on_stop = True
    digests = flushing.due_digests(flush_all=True)
    assert [d.details["storm_count"] for d in digests] == [2]


def test_redis_unreachable_fails_open_and_is_counted(redis_server_own: RedisServer) -> None:
    control = SharedStormControl(quick_client(redis_server_own.port), STREAM, 60, poll=0.05)
    control(envelope())
    redis_server_own.stop()
    outcome = control(envelope())
    assert not outcome.storm_suppressed, "delivered: a duplicate beats a missed alert"
    assert control.stats()["failed_open"] == 1
    assert not control(envelope()).storm_suppressed
    assert control.stats()["failed_open"] == 2, "the next events fail open without waiting"
    assert control.due_digests(flush_all=True) == []
    redis_server_own.start()
    time.sleep(RETRY_AFTER)
    assert not control(envelope()).storm_suppressed, "a fresh server: a new window"
    assert control(envelope()).storm_suppressed, "shared again once Redis is back"


def test_bad_settings_are_refused(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="window"):
        SharedStormControl(redis_server.client(), STREAM, -1)
    with pytest.raises(ValueError, match="poll"):
        SharedStormControl(redis_server.client(), STREAM, 1, poll=0)
