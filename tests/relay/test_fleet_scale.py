"""The fleet end to end: producing processes -> Redis Stream -> relays -> PagerDuty and Slack
stand-ins, with the relays sharing storm windows, silences and rate limits in Redis.

Each test counts sent, delivered, duplicated, dead-lettered and lost (lost must be 0) and prints
the numbers (``pytest -s`` shows them).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from alertkit import RetryPolicy
from alertkit.cli import main
from alertkit.relay import Relay
from alertkit.relay.keys import state_key
from alertkit.relay.silences import Silences
from alertkit.testing.stand_in import Reply, Request, ScriptedServer
from tests.relay.fleet import (
    ROOT,
    STREAM,
    Fleet,
    Sink,
    dead_letters,
    pending,
    stream_url,
    wait_until,
)
from tests.standins import redis as servers
from tests.standins.pagerduty import KEY, PagerDutyStandIn

redis_server_session = servers.redis_server_session
redis_server = servers.redis_server

FAST = RetryPolicy(backoff=0.05, max_backoff=0.5, max_attempts=20, deadline=60.0)

#: One parent imports alertkit once and forks every producer: 200 real processes, each with its
#: own Client and AlertHandler, without 200 interpreter start-ups on a shared machine.
PRODUCERS = textwrap.dedent(
    """
    import logging, os, sys
    from alertkit import AlertHandler, Client

    url, count, at_once = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    class PaymentDeclined(Exception):
        pass

    def produce(n):
        client = Client(backends=[url], sample_system=False, storm_window=0, shutdown_timeout=10)
        logger = logging.getLogger("payments")
        logger.propagate = False
        logger.addHandler(AlertHandler(client=client))
        for i in range(5):
            try:
                raise PaymentDeclined("card declined")
            except PaymentDeclined:
                logger.exception("Payment declined for order %s", f"{n}-{i}")
        logger.error(f"distinct error of producer {n}")
        ok = client.flush(30)
        client.shutdown(10)
        os._exit(0 if ok else 1)

    running, failed = set(), 0
    for n in range(count):
        if len(running) >= at_once:
            pid, status = os.wait()
            running.discard(pid)
            failed += status != 0
        pid = os.fork()
        if pid == 0:
            produce(n)
        running.add(pid)
    while running:
        pid, status = os.wait()
        running.discard(pid)
        failed += status != 0
    print(failed)
    """
)


def storm_messages(producers: int) -> list[str]:
    return [f"Payment declined for order {n}-{i}" for n in range(producers) for i in range(5)]


def distinct_messages(producers: int) -> list[str]:
    return [f"distinct error of producer {n}" for n in range(producers)]


class SlackStandIn:
    """A Slack incoming webhook stand-in that keeps every message's text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._lock = threading.Lock()
        self.server = ScriptedServer(self._answer)

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.texts.append(request.json()["text"])
        return Reply(200, b"ok")

    def url(self, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"endpoint": self.server.url, **options}.items())
        return f"slack://T000/B000/XXXX?{query}"

    def __enter__(self) -> SlackStandIn:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


class LimitedPagerDuty(PagerDutyStandIn):
    """PagerDuty answering 429 to an event over ``limit`` in any second, per routing key."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.recent: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self.refused = 0

    def _answer(self, request: Request) -> Reply:
        key = json.loads(request.body).get("routing_key", "")
        now = time.monotonic()
        with self._lock:
            recent = self.recent[key]
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= self.limit:
                self.refused += 1
                return Reply(429, {"status": "throttle event"}, {"Retry-After": "1"})
            recent.append(now)
        return super()._answer(request)


def summaries(pagerduty: PagerDutyStandIn) -> collections.Counter[str]:
    """How often each message reached PagerDuty (its summary is ``logger: message``)."""
    return collections.Counter(
        body["payload"]["summary"].rsplit(": ", 1)[-1] for body in pagerduty.bodies
    )


def count(sent: list[str], got: collections.Counter[str], dead: int = 0) -> dict[str, int]:
    delivered = sum(1 for m in sent if got[m])
    return {
        "sent": len(sent),
        "delivered": delivered,
        "duplicated": sum(max(0, got[m] - 1) for m in sent),
        "dead_lettered": dead,
        "lost": len(sent) - delivered - dead,
    }


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    made = Fleet()
    yield made
    made.close()


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    process.terminate()
    return process.wait(timeout)


@pytest.mark.slow
def test_200_processes_one_storm_two_relays_one_first_message_one_digest_nothing_lost(
    redis_server: servers.RedisServer, fleet: Fleet
) -> None:
    # The window must outlast the production (about 15 s on an idle 2-core machine, 75 s on a
    # loaded one) so that one digest counts all 1,000; it ends 120 s after the first event.
    producers, window = 200, 120
    url = stream_url(redis_server)
    with PagerDutyStandIn() as pagerduty, SlackStandIn() as slack:
        to = [pagerduty.url(rate="500/s"), slack.url(rate="100/s")]
        options = ["--storm-window", str(window), "--claim-after", "30"]
        relays = [fleet.relay(url, *to, name=f"relay-{i}", extra=options) for i in range(2)]
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", PRODUCERS, url, str(producers), "10"],
            capture_output=True,
            timeout=300,
            env=fleet.env(str(fleet.dir / "producers")),
            cwd=ROOT,
            check=False,
        )
        assert run.returncode == 0 and run.stdout.strip() == b"0", run.stderr[-2000:]
        produced_in = time.monotonic() - started
        sent = storm_messages(producers) + distinct_messages(producers)
        assert wait_until(lambda: len(pagerduty.bodies) >= len(sent), 120), len(pagerduty.bodies)
        assert wait_until(lambda: any(" x " in t for t in slack.texts), window + 30)
        time.sleep(1.0)  # a second digest or first message would show by now
        for relay in relays:
            assert stop(relay) == 0
    tally = count(sent, summaries(pagerduty), len(dead_letters(redis_server)))
    print(f"\nfleet of {producers} producers (produced in {produced_in:.1f} s): {tally}")
    assert tally["lost"] == 0 and tally["dead_lettered"] == 0
    # Judged by each message's title line: a distinct error's breadcrumbs quote the storm's errors.
    titles = [t.partition("\n")[0] for t in slack.texts]
    firsts = [t for t in titles if "PaymentDeclined" in t and " x " not in t]
    digests = [t for t in slack.texts if " x " in t.partition("\n")[0]]
    assert len(firsts) == 1, f"one first message for the storm across both relays: {firsts}"
    assert len(digests) == 1 and "PaymentDeclined x 1,000 " in digests[0], digests
    others = [t for t in titles if "distinct error" in t]
    assert len(others) == producers, "each distinct error is its own first message"


@pytest.mark.slow
def test_relays_at_the_rate_limit_see_almost_no_429_and_lose_nothing(
    redis_server: servers.RedisServer, fleet: Fleet
) -> None:
    events = 120
    url = stream_url(redis_server)
    with LimitedPagerDuty(limit=20) as pagerduty:
        to = pagerduty.url(rate="20/s")
        relays = [fleet.relay(url, to, name=f"relay-{i}") for i in range(2)]
        producer = fleet.producer(url, "burst", events)
        assert producer.wait(60) == 0
        sent = [f"burst event {i}" for i in range(events)]
        assert wait_until(lambda: set(summaries(pagerduty)) >= set(sent), 60)
        for relay in relays:
            assert stop(relay) == 0
    tally = count(sent, summaries(pagerduty), len(dead_letters(redis_server)))
    print(f"\n2 relays at 20/s into a 20/s PagerDuty: {tally}, 429s: {pagerduty.refused}")
    assert tally["lost"] == 0
    assert pagerduty.refused <= events // 10, "paced fleet-wide: 429s stay rare"


def test_silenced_entries_are_acknowledged_recorded_and_shown_by_status(
    redis_server: servers.RedisServer, capsys: Any
) -> None:
    url = stream_url(redis_server)
    silences = Silences(redis_server.client(), STREAM)
    silence = silences.add("message=~'muted .*'", 3600, "known noise", "ops")
    from alertkit import Client

    client = Client(backends=[url], sample_system=False, register_atexit=False, storm_window=0)
    for message in ("muted one", "kept", "muted two"):
        client.log({"eventmessage": message}, "error", exc_info=False)
    assert client.flush(10)
    client.shutdown(2)
    with Sink() as sink:
        relay = Relay(url, [sink.url], retry=FAST)
        relay.start()
        try:
            assert wait_until(lambda: relay.stats()["acked"] == 3)
        finally:
            assert relay.stop(5)
    assert dict(sink.received) == {"kept": 1}, "silenced events are not delivered"
    assert relay.stats()["screened_by"] == {"silenced": 2}
    assert silences.counts() == {silence.id: 2}
    with redis_server.client() as conn:
        kept = conn.xrange(state_key(STREAM, "silenced"))
        assert int(conn.xpending(f"{{{STREAM}}}", "alertkit")["pending"]) == 0
    assert len(kept) == 2 and all(fields[b"silence"] == silence.id.encode() for _, fields in kept)
    assert main(["relay", "status", "--from", url, "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["silences"]
    assert shown["id"] == silence.id and shown["muted"] == 2
    assert main(["relay", "status", "--from", url]) == 0
    table = capsys.readouterr().out
    assert silence.id in table and "known noise" in table


def test_a_relay_without_a_token_leaves_the_entry_pending_then_delivers(
    redis_server: servers.RedisServer,
) -> None:
    """Two relays share one bucket of 1 event per 2 s: the fleet sends no faster, and nothing
    is dropped meanwhile."""
    url = stream_url(redis_server)
    from alertkit import Client

    client = Client(backends=[url], sample_system=False, register_atexit=False, storm_window=0)
    for i in range(3):
        client.log({"eventmessage": f"paced {i}"}, "error", exc_info=False)
    assert client.flush(10)
    client.shutdown(2)
    with PagerDutyStandIn() as pagerduty:
        relays = [Relay(url, [pagerduty.url(rate="0.5/s")], retry=FAST) for _ in range(2)]
        started = time.monotonic()
        for relay in relays:
            relay.start()
        try:
            assert wait_until(lambda: len(pagerduty.bodies) >= 1, 10)
            assert len(pagerduty.bodies) == 1, "the second waits for the shared bucket"
            assert pending(redis_server) >= 2, "the others wait unacknowledged, not dropped"
            assert wait_until(lambda: len(pagerduty.bodies) >= 3, 15)
        finally:
            for relay in relays:
                relay.stop(5)
        elapsed = time.monotonic() - started
    assert elapsed >= 3.5, "3 events at 1 per 2 s, fleet-wide, take at least 4 s"
    assert sorted(summaries(pagerduty)) == [f"paced {i}" for i in range(3)]
    assert sum(r.stats()["fleet"]["rate_limit"]["waits"] for r in relays) >= 1
    assert KEY not in str([r.stats() for r in relays])
