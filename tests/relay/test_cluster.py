"""A real three-master Redis Cluster (with replicas), started by the test on loopback: the fleet
state, the `redis-stream` backend, relay processes, `relay status` and `alertkit silence` all
pointed at one node's URL; and the master holding the stream killed mid-stream while its replica
takes over.

Every key of a stream shares its hash tag, so the Lua scripts, transactions and stream commands
are served by one node. The end-to-end tests count sent, delivered, duplicated, dead-lettered and
lost (lost must be 0) and print the numbers (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from alertkit.backends.redis_stream import RedisStreamBackend
from alertkit.cli import main
from alertkit.model.errors import ConfigError
from alertkit.model.outcomes import Delivered
from alertkit.relay.keys import state_key, stream_key
from alertkit.relay.ratelimit import SharedRateLimit
from alertkit.relay.silences import Silences
from alertkit.relay.status import relay_status
from alertkit.relay.storm import SharedStormControl
from alertkit.testing.stand_in import Reply
from tests.relay._events import envelope
from tests.relay.fleet import Fleet, Sink, pending, sent_messages, tally, wait_until
from tests.standins.redis import RedisServer
from tests.standins.redis_cluster import (
    CLUSTER_PASSWORD,
    RedisCluster,
    redis_cluster,
    redis_cluster_module,
    started_cluster,
)

__all__ = ["redis_cluster", "redis_cluster_module"]
STREAM = "alertkit:events"
slow = pytest.mark.slow


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    made = Fleet()
    yield made
    made.close()


def other_master(cluster: RedisCluster, key: str) -> int:
    """A master that does not serve ``key``: a URL naming it makes the client follow the slots."""
    holder = cluster.master_of(key)
    return next(port for port in cluster.masters() if port != holder)


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("redis-stream://127.0.0.1:1/0?cluster=maybe", "cluster"),
        ("redis-stream://127.0.0.1:1/3?cluster=yes", "database 0"),
        ("redis-stream://127.0.0.1:1/0?replicas=-1", "replicas"),
        ("redis-stream://127.0.0.1:1/0?replicas=two", "replicas"),
    ],
)
def test_bad_cluster_options_fail_at_construction_naming_the_option(url: str, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        RedisStreamBackend.from_url(url)


def test_auto_finds_a_single_server_and_no_replica_wait(redis_server: RedisServer) -> None:
    """``cluster=auto`` asks the node once; a single server is written as before (no WAIT)."""
    backend = RedisStreamBackend.from_url(f"redis-stream://127.0.0.1:{redis_server.port}/0")
    try:
        assert all(isinstance(o, Delivered) for o in backend.send([envelope("a"), envelope("b")]))
        assert backend.connector.cluster is False
        assert backend.counters() == {"stream_evicted": 0, "stream_unreplicated": 0}
        client = backend.client()
        assert client.xlen(stream_key(STREAM)) == 2
        client.close()
        assert relay_status(backend)["cluster"] is None
    finally:
        backend.close()


def test_tls_reaches_the_relays_clients_and_the_cluster_client() -> None:
    """``rediss-stream://``: the relay's own clients (a ``redis.Redis`` takes ``ssl=True``, not a
    pool's connection class) and a cluster client use TLS; a cluster has no database number and
    its client retries on its own, briefly."""
    import redis

    from alertkit.backends._cluster import cluster_kwargs

    backend = RedisStreamBackend.from_url("rediss-stream://:pw@127.0.0.1:1/0?cluster=no")
    try:
        client = backend.client()
        assert client.get().connection_pool.connection_class is redis.SSLConnection
        client.close()
        options = cluster_kwargs(backend.connection_kwargs())
        assert options["ssl"] is True and options["ssl_cert_reqs"] == "required"
        assert "db" not in options and "connection_class" not in options
        assert options["retry"].get_retries() <= 2
    finally:
        backend.close()


def test_a_backend_on_an_unreachable_node_retries_later_without_raising() -> None:
    """Asking a node that is not there is a retry (the event is kept), never an exception."""
    backend = RedisStreamBackend.from_url("redis-stream://127.0.0.1:1/0?connect_timeout=0.5")
    try:
        [outcome] = backend.send([envelope()])
        assert type(outcome).__name__ == "RetryLater"
    finally:
        backend.close()


@slow
def test_every_key_of_a_stream_lives_in_the_streams_slot(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    slot = client.keyslot(stream_key(STREAM))
    for suffix in ("dead", "silenced", "silences", "storm:due", "storm:w:abc", "rate:abc"):
        assert client.keyslot(state_key(STREAM, suffix)) == slot
    client.close()


@slow
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


@slow
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


@slow
def test_the_backend_writes_through_any_node_and_waits_for_the_replica(
    redis_cluster_module: RedisCluster,
) -> None:
    """A URL naming a node that does not serve the stream: the batch goes to the stream's master
    (one MULTI/EXEC) and counts as written once the replica has it (WAIT); asking for more
    replicas than there are still writes, and counts the batch as unreplicated."""
    cluster, stream = redis_cluster_module, "backend:events"
    key = stream_key(stream)
    url = cluster.url(other_master(cluster, key), stream)
    backend = RedisStreamBackend.from_url(url)
    greedy = RedisStreamBackend.from_url(url + "&replicas=2&socket_timeout=1")
    try:
        outcomes = backend.send([envelope(f"through {i}") for i in range(50)])
        assert all(isinstance(o, Delivered) for o in outcomes)
        assert backend.connector.cluster is True
        assert backend.counters()["stream_unreplicated"] == 0
        [last] = greedy.send([envelope("greedy")])
        assert isinstance(last, Delivered)
        assert greedy.counters()["stream_unreplicated"] == 1
        with cluster.client() as client:
            written = [entry_id.decode() for entry_id, _ in client.xrange(key)]
        assert written == [o.info["id"] for o in outcomes if isinstance(o, Delivered)] + [
            last.info["id"]
        ]
        replica = next(port for port in cluster.running() if port not in cluster.masters())
        through_replica = RedisStreamBackend.from_url(cluster.url(replica, stream))
        [via] = through_replica.send([envelope("through a replica's URL")])
        through_replica.close()
        assert isinstance(via, Delivered), "a replica's URL finds the master too"
        assert CLUSTER_PASSWORD not in repr(backend) + backend.describe()
        assert quote(CLUSTER_PASSWORD, safe="") not in repr(backend)
    finally:
        backend.close()
        greedy.close()


@slow
def test_apps_two_relays_status_and_silences_through_one_node_of_the_cluster(
    redis_cluster_module: RedisCluster, fleet: Fleet, capsys: Any
) -> None:
    """Producer processes (AlertHandler, redis-stream:// naming one node) -> 2 relay processes ->
    an HTTP stand-in: every event delivered once, the one it rejects (400) dead-lettered with its
    acknowledgement in one transaction; a silence added by the CLI mutes what it matches on every
    relay; `relay status` reads the fleet from the same URL; no password shown."""
    cluster, stream = redis_cluster_module, "e2e:events"
    url = cluster.url(other_master(cluster, stream_key(stream)), stream)
    assert (
        main(["silence", "add", "--from", url, "--match", "message=~muted.*", "--for", "1h"]) == 0
    )
    added = capsys.readouterr().out
    assert added.startswith("silence ")
    with Sink(lambda m: Reply(400) if m == "c3 event 7" else Reply(200)) as sink:
        relays = [
            fleet.relay(url, sink.url, name=f"relay-{n}", extra=["--claim-after", "3"])
            for n in range(2)
        ]
        producers = [fleet.producer(url, f"c{n}", 20) for n in range(6)]
        producers.append(fleet.producer(url, "muted", 5))
        assert [p.wait(120) for p in producers] == [0] * 7
        sent = [m for n in range(6) for m in sent_messages(f"c{n}", 20)]
        assert wait_until(
            lambda: (
                tally(sent, sink, cluster, stream).lost == 0
                and pending(cluster, stream=stream) == 0
            ),
            60,
        ), (tally(sent, sink, cluster, stream), fleet.log("relay-0"), fleet.log("relay-1"))
        counts = tally(sent, sink, cluster, stream)
        with capsys.disabled():
            print(f"cluster, 6 producers, 2 relays: {counts}")
        assert counts.lost == 0 and counts.delivered == 119 and counts.dead_lettered == 1
        assert not [m for m in sink.received if m.startswith("muted ")]

        assert main(["relay", "status", "--from", url, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        [group] = status["groups"]
        assert status["stream"] == stream_key(stream) and status["length"] == 125
        assert status["dead_letters"] == 1
        assert status["cluster"] == {
            "slot": cluster.client().keyslot(stream_key(stream)),
            "master": f"127.0.0.1:{cluster.master_of(stream_key(stream))}",
        }
        assert group["pending"] == 0 and group["lag"] == 0
        assert sorted(c["name"] for c in group["consumers"]) == ["relay-0", "relay-1"]
        assert group["delivered"]["http"] >= 119
        [silence] = status["silences"]
        assert silence["muted"] == 5 and "muted" in silence["matchers"]
        with cluster.client() as client:
            assert client.xlen(state_key(stream, "silenced")) == 5
            keys = set(client.scan_iter(match="*e2e:events*"))
        # Everything the apps, relays and CLIs wrote (stream, dead letters, deliveries, silences,
        # storm windows) carries the stream's hash tag: one slot, one node.
        assert {state_key(stream, "dead").encode(), state_key(stream, "silences").encode()} <= keys
        assert all(k.startswith(stream_key(stream).encode()) for k in keys), keys
        assert main(["relay", "status", "--from", url]) == 0
        table = capsys.readouterr().out
        assert "relay-0" in table and "lag 0" in table and silence["id"] in table
        assert "Redis Cluster: slot" in table
        assert main(["silence", "expire", "--from", url, silence["id"]]) == 0
        assert main(["silence", "list", "--from", url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out.partition("\n")[2]) == []

        for relay in relays:
            relay.send_signal(signal.SIGTERM)
        assert [relay.wait(15) for relay in relays] == [0, 0]
    shown = capsys.readouterr().out + "".join(fleet.log(f"relay-{n}") for n in range(2))
    for secret in (CLUSTER_PASSWORD, quote(CLUSTER_PASSWORD, safe="")):
        assert secret not in shown


@slow
def test_failover_of_the_streams_master_mid_stream_loses_nothing(fleet: Fleet, capsys: Any) -> None:
    """Apps (spool=True) -> 2 relays -> HTTP stand-in, and the master holding the stream is
    SIGKILLed mid-stream: its replica takes over, the apps retry or spool and replay, the relays
    wait the failover out; 0 lost, duplicates counted (same event id each)."""
    made = started_cluster(CLUSTER_PASSWORD)
    cluster = next(made)
    try:
        key = stream_key(STREAM)
        master = cluster.master_of(key)
        url = cluster.url(other_master(cluster, key))
        with Sink() as sink:
            relays = [
                fleet.relay(url, sink.url, name=f"relay-{n}", extra=["--claim-after", "3"])
                for n in range(2)
            ]
            producers = [fleet.producer(url, f"f{n}", 60, spool=True, pause=0.05) for n in range(4)]
            assert wait_until(lambda: len(sink.received) >= 40, 60), fleet.log("relay-0")
            cluster.kill(master)
            killed = time.monotonic()
            assert wait_until(lambda: _moved(cluster, key, master), 30)
            cluster.wait_healthy(30)
            took = time.monotonic() - killed
            assert [p.wait(120) for p in producers] == [0] * 4
            sent = [m for n in range(4) for m in sent_messages(f"f{n}", 60)]
            assert wait_until(
                lambda: tally(sent, sink, cluster).lost == 0 and pending(cluster) == 0, 90
            ), (tally(sent, sink, cluster), fleet.log("relay-0"), fleet.log("relay-1"))
            counts = tally(sent, sink, cluster)
            with capsys.disabled():
                print(
                    f"cluster failover of the stream's master (taken over in {took:.1f}s): {counts}"
                )
            assert counts.lost == 0 and counts.delivered == 240
            for message in sent:  # a duplicate is the same event: its id travels with it
                assert len(sink.ids[message]) == 1

            assert main(["relay", "status", "--from", url, "--json"]) == 0
            status = json.loads(capsys.readouterr().out)
            [group] = status["groups"]
            assert group["pending"] == 0 and group["lag"] == 0
            assert status["cluster"]["master"] == f"127.0.0.1:{cluster.master_of(key)}"
            assert status["cluster"]["master"] != f"127.0.0.1:{master}", "the replica's now"
            for relay in relays:
                relay.send_signal(signal.SIGTERM)
            assert [relay.wait(15) for relay in relays] == [0, 0]
    finally:
        made.close()


def _moved(cluster: RedisCluster, key: str, old: int) -> bool:
    try:
        return cluster.master_of(key) != old
    except Exception:  # a node between two views of the slots
        return False
