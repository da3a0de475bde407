"""The fleet state and the stream on a real three-master Redis Cluster (with replicas), started by
the test on loopback: every key of a stream shares its hash tag, so the Lua scripts, pipelines and
stream commands are served by one node; and they go on after that node's master is killed and its
replica takes over."""

from __future__ import annotations

import time

import pytest

from alertkit.relay.keys import state_key, stream_key
from alertkit.relay.ratelimit import SharedRateLimit
from alertkit.relay.silences import Silences
from alertkit.relay.storm import SharedStormControl
from tests.relay._events import envelope
from tests.standins.redis_cluster import RedisCluster, redis_cluster

__all__ = ["redis_cluster"]
STREAM = "alertkit:events"
pytestmark = pytest.mark.slow


def test_every_key_of_a_stream_lives_in_the_streams_slot(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    slot = client.keyslot(stream_key(STREAM))
    for suffix in ("dead", "silenced", "silences", "storm:due", "storm:w:abc", "rate:abc"):
        assert client.keyslot(state_key(STREAM, suffix)) == slot
    client.close()


def test_storm_silences_and_rate_limits_work_on_a_cluster(redis_cluster: RedisCluster) -> None:
    relays = [SharedStormControl(redis_cluster.client(), STREAM, 0.5, poll=0.05) for _ in range(2)]
    marks = [relays[i % 2](envelope(f"declined {i}")).storm_suppressed for i in range(20)]
    assert marks.count(False) == 1 and marks.count(True) == 19
    time.sleep(0.6)
    digests = [d for relay in relays for d in relay.due_digests()]
    assert [d.details["storm_count"] for d in digests] == [20]

    silences = Silences(redis_cluster.client(), STREAM, refresh=0.01)
    silence = silences.add("logger=payments", 60)
    assert silences.screen(envelope(), "1-0") == "silenced"
    assert silences.counts() == {silence.id: 1}

    limits = [SharedRateLimit(redis_cluster.client(), STREAM) for _ in range(2)]
    assert limits[0].take("slack:hook", rate=0.5) == 0.0
    assert limits[1].take("slack:hook", rate=0.5) > 1.0, "one bucket for both relays"
    for part in (*relays, silences, *limits):
        assert part.stats().get("failed_open", 0) == 0


def test_the_master_holding_the_stream_fails_over_and_the_fleet_goes_on(
    redis_cluster: RedisCluster,
) -> None:
    key = stream_key(STREAM)
    client = redis_cluster.client()
    client.xgroup_create(key, "alertkit", id="0", mkstream=True)
    written = [client.xadd(key, {"envelope": f"before {i}"}) for i in range(10)]
    storm = SharedStormControl(redis_cluster.client(), STREAM, 60, poll=0.05)
    assert not storm(envelope()).storm_suppressed
    silences = Silences(redis_cluster.client(), STREAM, refresh=0.01)
    silence = silences.add("logger=payments", 3600)
    master = redis_cluster.master_of(key)
    with redis_cluster.node(master) as node:
        assert node.execute_command("WAIT", 1, 5000) >= 1, "the replica has everything"

    redis_cluster.kill(master)
    during = storm(envelope())
    assert during.storm_suppressed or storm.stats()["failed_open"] == 1, (
        "shared (the client already found the new master) or delivered and counted"
    )
    redis_cluster.wait_healthy(30)
    assert redis_cluster.master_of(key) != master, "the replica took over the stream's slot"

    deadline = time.monotonic() + 20
    while True:  # the client finds the new master (MOVED / refreshed slots)
        try:
            read = client.xreadgroup("alertkit", "relay-a", {key: ">"}, count=100)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ids = [entry_id for _, entries in read for entry_id, _ in entries]
    assert ids == written, "every entry written before the failover is still there, in order"
    assert client.xack(key, "alertkit", *ids) == 10
    after = client.xadd(key, {"envelope": "after"})
    assert [i for _, e in client.xreadgroup("alertkit", "relay-b", {key: ">"}) for i, _ in e] == [
        after
    ]

    time.sleep(1.1)  # past the fail-open memory of the outage
    assert storm(envelope()).storm_suppressed, "the window survived on the replica"
    assert silences.match(envelope()) == silence
    assert silences.screen(envelope(), after.decode()) == "silenced"
    assert SharedRateLimit(redis_cluster.client(), STREAM).take("pagerduty:k", rate=2) == 0.0
    client.close()
