"""The spool inside the pipeline: what cannot be delivered now is kept on disk and replayed, with
the same event ids, when the destination recovers or the next process starts — even after
SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alertkit import Client, RetryPolicy, Spooled
from alertkit.model.event import AppEvent, Envelope
from alertkit.spool.store import Spool
from tests.standins.http import Reply, ScriptedServer, free_port

FAST_OPEN = RetryPolicy(
    backoff=0.01,
    max_backoff=0.05,
    max_attempts=100,
    deadline=60,
    circuit_threshold=2,
    circuit_cooldown=0.3,
    circuit_max_cooldown=0.5,
)


def client_for(url: str, spool_path: Path, **options) -> Client:
    options.setdefault("retry", FAST_OPEN)
    options.setdefault("timeout", 1)
    return Client(
        api_key="k",
        backends=[f"{url}/v1/events"],
        spool_path=spool_path,
        sample_system=False,
        register_atexit=False,
        **options,
    )


def test_open_circuit_spools_and_recovery_replays_with_the_same_ids(tmp_path) -> None:
    spool_path = tmp_path / "spool.db"
    with ScriptedServer([Reply(500)]) as server:
        client = client_for(server.url, spool_path, batch_size=1, threads=1)
        futures = [
            client.send_event_async(client.create_new_app_event(event_message=f"e{i}"))
            for i in range(10)
        ]
        assert client.flush(10)
        results = [f.result()["http"] for f in futures]
        assert sum(isinstance(r, Spooled) for r in results) >= 8, results
        assert client.stats()["http"]["spooled"] >= 8
        spooled_ids = {row["event_id"] for row in Spool(spool_path).list("http", limit=100)}
        failed_requests = len(server.requests)
        server.set_script([Reply(200)])
        deadline = time.monotonic() + 15
        while Spool(spool_path).counts().get("http", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Spool(spool_path).counts().get("http", 0) == 0, "every spooled event was replayed"
        replayed_ids = {r.headers["idempotency-key"] for r in server.requests[failed_requests:]}
        assert spooled_ids <= replayed_ids, "replays carry the original event ids"
        assert client.stats()["http"]["replayed"] >= len(spooled_ids)
        client.shutdown(2)


def test_what_the_shutdown_budget_leaves_is_spooled_and_the_next_client_delivers_it(
    tmp_path, capfd
) -> None:
    spool_path = tmp_path / "spool.db"
    with ScriptedServer([Reply(hang=True)]) as server:
        client = client_for(server.url, spool_path, timeout=30)
        for i in range(5):
            client.send_event_async(client.create_new_app_event(event_message=f"late{i}"))
        time.sleep(0.2)
        client.shutdown(0.5)
        assert "http: 5 spooled" in capfd.readouterr().err
        assert client.stats()["http"]["spooled"] == 5 and client.stats()["http"]["dropped"] == 0
    with ScriptedServer([Reply(200)]) as healthy:
        fresh = client_for(healthy.url, spool_path)
        deadline = time.monotonic() + 10
        while len(healthy.requests) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(r.json()["eventMessage"] for r in healthy.requests) == [
            f"late{i}" for i in range(5)
        ]
        fresh.shutdown(2)


CHILD = textwrap.dedent("""
    import sys, time
    from alertkit import Client, RetryPolicy
    policy = RetryPolicy(backoff=0.01, max_backoff=0.05, max_attempts=100, deadline=600,
                         circuit_threshold=2, circuit_cooldown=60)
    client = Client(api_key="k", backends=[sys.argv[1]], spool_path=sys.argv[2], retry=policy,
                    sample_system=False, timeout=1, register_atexit=False)
    for i in range(500):
        client.send_event_async(client.create_new_app_event(event_message=f"k{i}"))
    deadline = time.monotonic() + 60
    while client.stats()["http"]["spooled"] < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    print("spooled", client.stats()["http"]["spooled"], flush=True)
    time.sleep(600)  # killed with SIGKILL before this ends
""")


def test_sigkilled_process_loses_nothing_that_reached_the_spool(tmp_path) -> None:
    spool_path = tmp_path / "spool.db"
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"http://127.0.0.1:{port}/v1/events", str(spool_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "spooled 500", line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with ScriptedServer([Reply(200)], port=port) as server:
        fresh = client_for(server.url, spool_path)
        deadline = time.monotonic() + 30
        while (
            len({r.json()["eventMessage"] for r in server.requests}) < 500
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        received = {r.json()["eventMessage"] for r in server.requests}
        assert received == {f"k{i}" for i in range(500)}
        fresh.shutdown(2)
    assert Spool(spool_path).counts().get("http", 0) == 0


def test_deadline_reached_goes_to_the_spool(tmp_path) -> None:
    policy = RetryPolicy(
        backoff=0.05, max_backoff=0.05, deadline=0.2, max_attempts=100, circuit_threshold=0
    )
    with ScriptedServer([Reply(503)]) as server:
        client = client_for(server.url, tmp_path / "s.db", retry=policy)
        result = client.send_event(client.create_new_app_event(), timeout=10)["http"]
        assert isinstance(result, Spooled) and "deadline" in result.reason
        server.set_script([Reply(200)])
        deadline = time.monotonic() + 10
        while Spool(tmp_path / "s.db").counts().get("http", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Spool(tmp_path / "s.db").counts().get("http", 0) == 0, "replayed by itself"
        client.shutdown(1)


REPLAYING_CHILD = textwrap.dedent("""
    import sys, time
    from alertkit import Client
    # The destination hangs: the worker claims the spooled events at start and is mid-send.
    client = Client(api_key="k", backends=[sys.argv[1]], spool_path=sys.argv[2], threads=1,
                    batch_size=50, sample_system=False, timeout=60, register_atexit=False)
    deadline = time.monotonic() + 60
    while client.stats()["http"]["replayed"] < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    print("replaying", client.stats()["http"]["replayed"], flush=True)
    time.sleep(600)  # killed with SIGKILL before this ends
""")


def test_a_new_process_replays_at_once_what_a_sigkilled_one_was_replaying(tmp_path) -> None:
    spool_path = tmp_path / "spool.db"
    with Spool(spool_path) as spool:
        for i in range(50):
            spool.put("http", spooled_event(i), "deadline")
    with ScriptedServer([Reply(hang=True)]) as hanging:
        child = subprocess.Popen(
            [sys.executable, "-c", REPLAYING_CHILD, f"{hanging.url}/v1/events", str(spool_path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            line = child.stdout.readline() if child.stdout else ""
            assert line.strip() == "replaying 50", line
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
    assert Spool(spool_path).list("http", limit=1)[0]["leased"], "the dead process held them"
    with ScriptedServer([Reply(200)]) as server:
        started = time.monotonic()
        fresh = client_for(server.url, spool_path)
        deadline = started + 20  # the lease is 60 s: only a dead-owner check can beat it
        while len(server.requests) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        received = sorted(r.json()["eventMessage"] for r in server.requests)
        fresh.shutdown(2)
    assert received == sorted(f"replay{i}" for i in range(50))


def spooled_event(i: int) -> Envelope:
    """An envelope as the pipeline would have spooled it."""
    event = AppEvent(
        api_key="k",
        classification="issue",
        event_type="E",
        event_message=f"replay{i}",
        log_level="error",
    )
    return Envelope(event=event, created=time.time() + i / 1000)


def test_spool_bounds_are_client_options_and_evictions_outlive_shutdown(tmp_path) -> None:
    with ScriptedServer([Reply(500)]) as server:
        client = client_for(server.url, tmp_path / "s.db", spool_max_events=3, threads=1)
        assert client.pipeline.spool is not None and client.pipeline.spool.max_events == 3
        assert client.stats()["http"]["spool_quarantined"] is None
        for i in range(10):
            client.send_event_async(client.create_new_app_event(event_message=f"e{i}"))
        assert client.flush(10)
        evicted = client.stats()["http"]["evicted"]
        assert evicted >= 5
        client.shutdown(1)
        assert client.stats()["http"]["evicted"] == evicted, "kept after shutdown"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"spool": True, "spool_max_events": 0}, ValueError, "spool_max_events"),
        ({"spool": True, "spool_max_bytes": -1}, ValueError, "spool_max_bytes"),
        ({"spool": True, "spool_max_age": "7d"}, TypeError, "spool_max_age must be a number"),
        ({"spool": True, "spool_max_events": 1.5}, TypeError, "spool_max_events must be a whole"),
        ({"spool_max_age": 60}, ValueError, "spool_max_age is set but the spool is off"),
    ],
)
def test_bad_spool_bounds_fail_at_construction_naming_the_option(options, error, message) -> None:
    with pytest.raises(error, match=message):
        Client(
            api_key="k", backends=["http://127.0.0.1:9/v1/events"], register_atexit=False, **options
        )


def test_a_client_starts_on_a_garbage_spool_and_says_where_it_went(tmp_path, caplog) -> None:
    spool_path = tmp_path / "spool.db"
    spool_path.write_bytes(b"\x00garbage\xff" * 4000)
    client = client_for("http://127.0.0.1:9", spool_path)
    moved = client.stats()["http"]["spool_quarantined"]
    assert moved is not None and Path(moved).name.startswith("spool.db.corrupt-")
    assert Path(moved).read_bytes() == b"\x00garbage\xff" * 4000
    assert "moved it aside" in caplog.text
    client.shutdown(1)
