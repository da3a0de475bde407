"""Fault tests of a fleet on loopback: real redis-server, relay processes, producer processes.

Each prints its tally (sent, delivered, duplicated, dead-lettered, lost) and asserts lost == 0.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import msgspec
import pytest

from alertkit import Client
from alertkit.model.event import Envelope
from alertkit.relay.keys import stream_key
from alertkit.testing.stand_in import Reply
from tests.relay.fleet import (
    STREAM,
    Fleet,
    Sink,
    pending,
    sent_messages,
    stream_url,
    tally,
    wait_until,
)
from tests.standins import redis as servers

redis_server_session = servers.redis_server_session
redis_server = servers.redis_server

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    made = Fleet()
    yield made
    made.close()


def produce_here(url: str, messages: list[str]) -> None:
    client = Client(backends=[url], sample_system=False, register_atexit=False, storm_window=0)
    try:
        for message in messages:
            client.log({"eventmessage": message}, "error", exc_info=False)
        assert client.flush(10)
    finally:
        client.shutdown(2)


def consumer_pending(server: servers.RedisServer, name: str) -> int:
    import redis

    with server.client() as conn:
        try:
            consumers = conn.xinfo_consumers(stream_key(STREAM), "alertkit")
        except redis.ResponseError:  # no group yet: no relay has started
            return 0
    for consumer in consumers:
        if consumer["name"].decode() == name:
            return int(consumer["pending"])
    return 0


def test_sigkill_of_a_relay_holding_entries_hands_them_to_the_other(redis_server, fleet):
    """Relay A is killed while it holds unacknowledged entries; relay B claims them after
    --claim-after and every event is delivered at least once."""
    url = stream_url(redis_server)
    sent = sent_messages("kill", 300)
    with Sink(lambda message: Reply(200, delay=0.02)) as sink:
        produce_here(url, sent)
        extra = ["--claim-after", "2", "--stop-timeout", "3"]
        relay_a = fleet.relay(url, sink.url, name="relay-a", extra=extra)
        assert wait_until(lambda: consumer_pending(redis_server, "relay-a") > 20), fleet.log(
            "relay-a"
        )
        relay_b = fleet.relay(url, sink.url, name="relay-b", extra=extra)
        held = consumer_pending(redis_server, "relay-a")
        relay_a.send_signal(signal.SIGKILL)
        relay_a.wait(10)
        assert wait_until(
            lambda: tally(sent, sink, redis_server).lost == 0 and pending(redis_server) == 0, 60
        ), (tally(sent, sink, redis_server), fleet.log("relay-b"))
        counts = tally(sent, sink, redis_server)
        print(f"SIGKILL takeover (relay A held {held}): {counts}")
        assert counts.lost == 0 and counts.delivered == 300
        assert consumer_pending(redis_server, "relay-a") == 0
        relay_b.send_signal(signal.SIGTERM)
        assert relay_b.wait(10) == 0
        for message in sent:  # a duplicate is the same event: its id travels with it
            assert len(sink.ids[message]) == 1


def test_sigterm_mid_stream_exits_0_within_budget_and_acks_only_what_was_delivered(
    redis_server, fleet
):
    url = stream_url(redis_server)
    sent = sent_messages("term", 1500)
    with Sink(lambda message: Reply(200, delay=0.02)) as sink:
        produce_here(url, sent)
        relay = fleet.relay(url, sink.url, name="relay-t", extra=["--stop-timeout", "1"])
        assert wait_until(lambda: pending(redis_server) and len(sink.received) >= 300), fleet.log(
            "relay-t"
        )
        asked = time.monotonic()
        relay.send_signal(signal.SIGTERM)
        status = relay.wait(10)
        took = time.monotonic() - asked
        delivered = set(sink.received)
    assert status == 0, fleet.log("relay-t")
    assert took < 1 + 2.0, took  # the budget, and an interpreter's exit
    with redis_server.client() as conn:
        entries = conn.xrange(stream_key(STREAM))
        [group] = conn.xinfo_groups(stream_key(STREAM))
        still = {
            row["message_id"]
            for row in conn.xpending_range(stream_key(STREAM), "alertkit", "-", "+", 10_000)
        }
    last = tuple(int(p) for p in group["last-delivered-id"].decode().split("-"))
    acked = [
        fields
        for entry_id, fields in entries
        if tuple(int(p) for p in entry_id.decode().split("-")) <= last and entry_id not in still
    ]
    acked_messages = {
        msgspec.json.decode(f[b"envelope"], type=Envelope).event.event_message for f in acked
    }
    print(f"SIGTERM: {len(acked_messages)} acked, {len(delivered)} delivered, {len(still)} pending")
    assert acked_messages <= delivered  # nothing acknowledged that was not delivered
    assert acked_messages  # it acknowledged as it went
    assert len(acked_messages) < len(sent)  # and stopped mid-stream


def test_redis_killed_and_restarted_while_apps_produce_loses_nothing(fleet):
    """Producers with spool=True keep logging through a Redis outage (SIGKILL, then a restart
    on the same port with its append-only file): every event is delivered."""
    binary = servers.redis_server_binary()
    assert binary is not None
    server = servers.RedisServer(binary, options=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    try:
        url = stream_url(server)
        with Sink() as sink:
            relay = fleet.relay(url, sink.url, name="relay-r", extra=["--claim-after", "3"])
            producers = [fleet.producer(url, f"p{n}", 60, spool=True, pause=0.03) for n in range(4)]
            time.sleep(0.8)
            assert server.process is not None
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(10)
            server.process = None
            time.sleep(2.0)
            server.start()
            for producer in producers:
                assert producer.wait(90) == 0
            sent = [m for n in range(4) for m in sent_messages(f"p{n}", 60)]
            assert wait_until(lambda: tally(sent, sink, server).lost == 0, 60), (
                tally(sent, sink, server),
                fleet.log("relay-r"),
            )
            counts = tally(sent, sink, server)
            print(f"Redis SIGKILL + restart: {counts}")
            assert counts.lost == 0
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(15) == 0
    finally:
        server.close()


def test_twenty_producer_processes_two_relays_everything_delivered(redis_server, fleet):
    url = stream_url(redis_server)
    with Sink() as sink:
        relays = [fleet.relay(url, sink.url, name=f"relay-{n}") for n in range(2)]
        producers = [fleet.producer(url, f"proc{n}", 10) for n in range(20)]
        for producer in producers:
            assert producer.wait(120) == 0
        sent = [m for n in range(20) for m in sent_messages(f"proc{n}", 10)]
        assert wait_until(lambda: tally(sent, sink, redis_server).lost == 0, 60)
        counts = tally(sent, sink, redis_server)
        print(f"20 producers, 2 relays: {counts}")
        assert counts.lost == 0 and counts.delivered == 200
        for relay in relays:
            relay.send_signal(signal.SIGTERM)
        assert [relay.wait(15) for relay in relays] == [0, 0]
