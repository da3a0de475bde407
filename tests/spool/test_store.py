"""The durable spool: whole envelopes kept in order, leased, bounded, shared by threads and processes."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from alertkit.model.errors import AlertkitError, ConfigError
from alertkit.model.event import (
    AppEvent,
    CustomData,
    CustomDoubleData,
    CustomStringData,
    Envelope,
    InnerStackTrace,
    StackTraceLine,
)
from alertkit.spool.store import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENTS,
    Spool,
    SpoolCorruptError,
    SpoolError,
    default_spool_path,
)

T0 = 1_800_000_000.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def envelope(n: int = 0, *, created: float = T0, event_id: str | None = None) -> Envelope:
    """A small event with a fixed-width message, so every envelope has the same size."""
    event = AppEvent(
        api_key="key-0123456789",
        classification="issue",
        event_type="ValueError",
        event_message=f"boom {n:06d}",
        log_level="error",
    )
    if event_id is None:
        return Envelope(event=event, created=created)
    return Envelope(event=event, created=created, event_id=event_id)


def full_envelope() -> Envelope:
    """An envelope using every field the pipeline may fill."""
    event = AppEvent(
        api_key="key-0123456789",
        classification="issue",
        event_type="builtins.ZeroDivisionError",
        event_message="division by zero — ünïcode ✓",
        log_level="fatal",
        event_time=1_800_000_000_123,
        event_stacktrace=[
            InnerStackTrace(
                type="ZeroDivisionError",
                message="division by zero",
                trace_lines=[StackTraceLine(function="pay", line=42, file="shop/checkout.py")],
            )
        ],
        event_user="jill@example.com",
        context_tags=["eu", "web"],
        context_cpu_percentage=12.5,
        custom_properties=CustomData(
            string_data=CustomStringData(custom_data1="checkout"),
            double_data=CustomDoubleData(custom_data1=42.5),
        ),
    )
    return Envelope(
        event=event,
        kind="event",
        levelno=50,
        logger_name="shop.checkout",
        template="Checkout failed for order %s",
        details={"order_id": 7731, "items": [1, 2.5, None, {"sku": "A-1"}], "ok": False},
        exc_text="Traceback (most recent call last):\n  ...\nZeroDivisionError: division by zero",
        incident_key="checkout-7731",
        links=[{"href": "https://shop.example/orders/7731", "text": "order"}],
        images=[{"src": "https://img.example/a.png", "href": "https://img.example", "alt": "a"}],
        tags={"region": "eu"},
        request_log={"entries": [{"at": 1.5, "msg": "GET /cart"}]},
        payload=None,
        created=T0 + 0.25,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path, clock) -> Spool:
    with Spool(tmp_path / "spool.db", clock=clock) as s:
        yield s


def test_defaults_are_documented_values_and_the_path_is_under_alertkit_home(alertkit_home) -> None:
    assert (DEFAULT_MAX_EVENTS, DEFAULT_MAX_BYTES, DEFAULT_MAX_AGE) == (
        100_000,
        200 * 1024 * 1024,
        7 * 24 * 3600,
    )
    assert default_spool_path() == Path(alertkit_home) / "spool.db"
    assert Spool().path == default_spool_path()
    assert issubclass(SpoolError, AlertkitError)


def test_a_full_envelope_comes_back_identical_with_its_event_id(spool) -> None:
    original = full_envelope()
    spool.put("http", original, "deadline of 120s exceeded")
    (item,) = spool.claim("http", 10)
    assert item.envelope.event_id == original.event_id
    assert msgspec.json.encode(item.envelope) == msgspec.json.encode(original)
    assert item.envelope.event == original.event
    assert item.envelope.details == original.details and item.envelope.links == original.links
    assert (item.backend, item.reason, item.attempts, item.spooled_at) == (
        "http",
        "deadline of 120s exceeded",
        0,
        T0,
    )


def test_claim_returns_capture_order_per_backend(spool) -> None:
    for n, created in enumerate([T0 + 3, T0 + 1, T0 + 2]):
        spool.put("http", envelope(n, created=created), "down")
    spool.put("pagerduty", envelope(9, created=T0), "down")
    messages = [e.envelope.event.event_message for e in spool.claim("http", 10)]
    assert messages == ["boom 000001", "boom 000002", "boom 000000"]
    assert spool.counts() == {"http": 3, "pagerduty": 1}


def test_spooling_the_same_event_again_keeps_one_row(spool) -> None:
    first = envelope(1)
    spool.put("http", first, "deadline")
    spool.put("http", first, "circuit open")
    spool.put("pagerduty", first, "deadline")
    assert spool.counts() == {"http": 1, "pagerduty": 1}
    (item,) = spool.claim("http", 10)
    assert item.reason == "circuit open"


def test_ack_release_and_drop_settle_claimed_rows(spool) -> None:
    assert not spool.pending("http")
    for n in range(3):
        spool.put("http", envelope(n, created=T0 + n), "down")
    assert spool.pending("http") and not spool.pending("slack")
    a, b, c = spool.claim("http", 10)
    assert spool.claim("http", 10) == [], "leased rows are not claimed twice"
    assert not spool.pending("http"), "leased rows are not pending"
    assert spool.ack([a.id]) == 1
    assert spool.drop([b.id]) == 1
    assert spool.release([c.id], "503 Service Unavailable") == 1
    (again,) = spool.claim("http", 10)
    assert (again.id, again.attempts, again.reason) == (c.id, 1, "503 Service Unavailable")
    assert spool.ack([a.id]) == 0, "a row already acked is gone"


def test_release_with_delay_hides_rows_until_then(spool, clock) -> None:
    spool.put("http", envelope(), "down")
    (item,) = spool.claim("http", 1)
    spool.release([item.id], delay=30)
    assert spool.claim("http", 1) == []
    clock.now += 31
    assert [e.id for e in spool.claim("http", 1)] == [item.id]


def test_two_claimers_get_disjoint_rows_and_an_expired_lease_comes_back(tmp_path, clock) -> None:
    path = tmp_path / "shared.db"
    one = Spool(path, lease_seconds=30, clock=clock)
    two = Spool(path, lease_seconds=30, clock=clock)
    try:
        for n in range(10):
            one.put("http", envelope(n, created=T0 + n), "down")
        first = one.claim("http", 6)
        clock.now += 20
        second = two.claim("http", 6)
        assert len(first) == 6 and len(second) == 4
        assert {e.id for e in first}.isdisjoint({e.id for e in second})
        assert two.claim("http", 6) == []
        clock.now += 15  # process "one" crashed: its lease runs out, "two"'s does not yet
        back = two.claim("http", 10)
        assert sorted(e.id for e in back) == sorted(e.id for e in first)
        assert one.release([e.id for e in first]) == 0, "a lease taken over is not released"
    finally:
        one.close()
        two.close()


def test_threads_claiming_at_once_never_share_a_row(spool) -> None:
    for n in range(200):
        spool.put("http", envelope(n, created=T0 + n), "down")
    got: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def claimer(slot: int) -> None:
        start.wait()
        while batch := spool.claim("http", 7):
            got[slot].extend(e.id for e in batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [i for part in got for i in part]
    assert len(ids) == 200 and len(set(ids)) == 200


def test_count_bound_evicts_oldest_first_and_counts_it(tmp_path, clock) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, max_events=5, clock=clock) as spool:
        for n in range(8):
            spool.put("http" if n % 2 else "slack", envelope(n, created=T0 + n), "down")
        left = [item["event"]["eventMessage"] for item in spool.list()]
        assert left == [f"boom {n:06d}" for n in range(3, 8)]
        assert spool.evicted() == {"http": 1, "slack": 2}
        assert spool.size()[0] == 5
    with Spool(path, clock=clock) as reopened:
        assert reopened.evicted() == {"http": 1, "slack": 2}, "eviction counts are persisted"


def test_byte_bound_evicts_oldest_until_the_rest_fits(tmp_path, clock) -> None:
    one = len(msgspec.json.encode(envelope(0)))
    with Spool(tmp_path / "spool.db", max_bytes=3 * one + one // 2, clock=clock) as spool:
        for n in range(5):
            spool.put("http", envelope(n, created=T0 + n), "down")
        assert [e.envelope.event.event_message for e in spool.claim("http", 10)] == [
            "boom 000002",
            "boom 000003",
            "boom 000004",
        ]
        assert spool.evicted() == {"http": 2}
        assert spool.size() == (3, 3 * one)


def test_an_event_larger_than_the_whole_spool_is_refused(tmp_path, clock) -> None:
    small = len(msgspec.json.encode(envelope(0)))
    assert len(msgspec.json.encode(full_envelope())) > small * 2
    with Spool(tmp_path / "spool.db", max_bytes=small * 2, clock=clock) as spool:
        with pytest.raises(SpoolError, match="max_bytes"):
            spool.put("http", full_envelope(), "down")
        assert spool.counts() == {}
        batch = [envelope(1, created=T0 + 1), full_envelope(), envelope(2, created=T0 + 2)]
        assert spool.put_many("http", batch, "shutdown budget ran out") == 2
        assert [e.envelope.event.event_message for e in spool.claim("http", 10)] == [
            "boom 000001",
            "boom 000002",
        ], "the others of a batch are stored"


def test_age_bound_evicts_events_captured_too_long_ago(tmp_path, clock) -> None:
    with Spool(tmp_path / "spool.db", max_age=100, clock=clock) as spool:
        spool.put("http", envelope(1, created=T0 - 200), "down")
        assert spool.counts() == {} and spool.evicted() == {"http": 1}
        spool.put("http", envelope(2, created=T0 - 50), "down")
        assert spool.counts() == {"http": 1}
        clock.now += 60
        assert spool.claim("http", 10) == [], "expired rows are not replayed"
        assert spool.evicted() == {"http": 2}


def test_an_unreadable_row_is_evicted_instead_of_blocking_the_rest(spool) -> None:
    spool.put("http", envelope(1, created=T0), "down")
    spool.put("http", envelope(2, created=T0 + 1), "down")
    with sqlite3.connect(spool.path) as conn:
        conn.execute("UPDATE spool SET envelope = ? WHERE id = 1", (b"{not json",))
    assert [e.envelope.event.event_message for e in spool.claim("http", 10)] == ["boom 000002"]
    assert spool.evicted() == {"http": 1}


def test_list_shows_event_json_without_the_api_key_and_purge_empties(spool) -> None:
    spool.put("http", full_envelope(), "deadline")
    spool.put("slack", envelope(1), "circuit open")
    (row,) = spool.list("http")
    assert row["event"]["eventType"] == "builtins.ZeroDivisionError"
    assert row["event"]["apiKey"] == "****"
    assert "key-0123456789" not in json.dumps(spool.list())
    assert (row["reason"], row["attempts"], row["leased"]) == ("deadline", 0, False)
    assert spool.purge("slack") == 1
    assert spool.counts() == {"http": 1}
    assert spool.purge() == 1 and spool.counts() == {}


def test_the_file_is_private_to_its_owner(spool) -> None:
    spool.put("http", envelope(), "down")
    assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600


def test_failures_raise_spool_error_and_close_is_idempotent(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    broken = Spool(blocker / "spool.db")
    with pytest.raises(SpoolError):
        broken.put("http", envelope(), "down")
    spool = Spool(tmp_path / "ok.db")
    spool.put("http", envelope(), "down")
    spool.close()
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.put("http", envelope(), "down")


@pytest.mark.parametrize("option", ["max_events", "max_bytes", "max_age", "timeout"])
def test_bounds_must_be_positive(option) -> None:
    with pytest.raises(ConfigError, match=option):
        Spool(**{option: 0})


def test_a_directory_is_refused_at_construction(tmp_path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        Spool(tmp_path)


# -- processes ---------------------------------------------------------------------------------------


def _child_after_fork(spool: Spool, parent_conn_id: int) -> None:
    spool.put("http", envelope(2, created=T0 + 2, event_id="from-child"), "down")
    assert spool._conn is not None and id(spool._conn) != parent_conn_id
    os._exit(0)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()")
def test_a_forked_child_reopens_and_the_parent_keeps_working(tmp_path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.put("http", envelope(1, created=T0 + 1, event_id="from-parent"), "down")
    assert spool._conn is not None
    child = multiprocessing.get_context("fork").Process(
        target=_child_after_fork, args=(spool, id(spool._conn))
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    spool.put("http", envelope(3, created=T0 + 3, event_id="parent-again"), "down")
    ids = [e.envelope.event_id for e in spool.claim("http", 10)]
    assert ids == ["from-parent", "from-child", "parent-again"]
    spool.close()


def _writer(path: str, writer: int, count: int) -> None:
    with Spool(path) as spool:
        for n in range(count):
            spool.put("http", envelope(n, event_id=f"w{writer}-{n}", created=time.time()), "down")


def _claimer(path: str, out: str, writers_done: Any, together: Any) -> None:
    """Claim and ack until the writers are done and the spool is empty. The two claimers meet at
    a barrier between claim and ack, so each claims while the other still holds its lease."""
    claimed: list[str] = []
    deadline = time.monotonic() + 60
    with Spool(path) as spool:
        while time.monotonic() < deadline:
            finished = writers_done.is_set()
            batch = spool.claim("http", 25)
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(10)
            claimed.extend(item.envelope.event_id for item in batch)
            spool.ack([item.id for item in batch])
            if not batch and finished:
                together.abort()  # the partner goes on alone
                break
            if not batch:
                time.sleep(0.005)
    Path(out).write_text(json.dumps(claimed))


def test_four_writer_processes_and_two_claimers_share_one_file(tmp_path) -> None:
    context = multiprocessing.get_context("spawn")
    path = str(tmp_path / "shared.db")
    Spool(path).close()  # create the file once, so the processes race on writes, not on schema
    done = context.Event()
    together = context.Barrier(2)
    outs = [str(tmp_path / f"acked-{i}.json") for i in range(2)]
    claimers = [context.Process(target=_claimer, args=(path, out, done, together)) for out in outs]
    writers = [context.Process(target=_writer, args=(path, w, 250)) for w in range(4)]
    for process in claimers + writers:
        process.start()
    for process in writers:
        process.join(120)
    done.set()
    for process in claimers:
        process.join(120)
    assert [p.exitcode for p in writers + claimers] == [0] * 6
    acked = [event_id for out in outs for event_id in json.loads(Path(out).read_text())]
    with Spool(path) as spool:
        remaining = [e.envelope.event_id for e in spool.claim("http", 2000)]
    assert len(acked) == len(set(acked)), "no event was claimed (and acked) twice"
    assert set(acked).isdisjoint(remaining)
    expected = {f"w{w}-{n}" for w in range(4) for n in range(250)}
    assert set(acked) | set(remaining) == expected, "none lost, none invented"
    assert len(acked) + len(remaining) == 1000


def _killed_writer(path: str, report: Any) -> None:
    """Claim the waiting rows, then spool events until killed, reporting each one committed."""
    with Spool(path) as spool:
        report.send([item.envelope.event_id for item in spool.claim("http", 100)])
        for n in range(100_000):
            event_id = f"late-{n}"
            spool.put("http", envelope(n, event_id=event_id), "down")
            report.send(event_id)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_loses_no_committed_event_and_its_leases_come_back(tmp_path) -> None:
    context = multiprocessing.get_context("spawn")
    path = str(tmp_path / "spool.db")
    with Spool(path) as spool:
        for n in range(10):
            spool.put("http", envelope(n, event_id=f"early-{n}", created=T0 + n), "down")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_killed_writer, args=(path, sender))
    child.start()
    sender.close()
    claimed = receiver.recv()
    committed = []
    while len(committed) < 50:
        committed.append(receiver.recv())
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    with contextlib.suppress(EOFError):
        while True:
            committed.append(receiver.recv())
    assert child.exitcode == -signal.SIGKILL
    assert claimed == [f"early-{n}" for n in range(10)]
    an_hour_later = Spool(path, clock=lambda: time.time() + 3600)
    with an_hour_later:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        back = {item.envelope.event_id for item in an_hour_later.claim("http", 200_000)}
    assert set(claimed) <= back, "the dead process's leased rows are claimable again"
    assert set(committed) <= back, "every put that returned is on disk"


# -- a crashed claimer's rows come back at once --------------------------------------------------------


def _claim_then_hang(path: str, report: Any) -> None:
    """Claim every waiting row (as a worker mid-replay does), say so, then wait to be killed."""
    spool = Spool(path)
    report.send([item.envelope.event_id for item in spool.claim("http", 100)])
    time.sleep(600)


def _claim_then_close(path: str, report: Any, go_on: Any) -> None:
    with Spool(path) as spool:
        report.send([item.envelope.event_id for item in spool.claim("http", 100)])
        go_on.wait(30)


def _spool_ten(path: Path) -> None:
    with Spool(path) as spool:
        for n in range(10):
            spool.put("http", envelope(n, event_id=f"e{n}", created=T0 + n), "down")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_rows_of_a_sigkilled_claimer_are_claimable_at_once_not_after_the_lease(tmp_path) -> None:
    path = tmp_path / "spool.db"
    _spool_ten(path)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_claim_then_hang, args=(str(path), sender))
    child.start()
    try:
        assert receiver.poll(60)
        assert len(receiver.recv()) == 10
        with Spool(path) as other:
            assert other.claim("http", 100) == [], "a live claimer keeps its rows"
            os.kill(child.pid, signal.SIGKILL)
            child.join(30)
            assert other.pending("http"), "pending() sees the dead claimer's rows at once"
            back = [item.envelope.event_id for item in other.claim("http", 100)]
    finally:
        if child.is_alive():
            child.kill()
            child.join(30)
    assert back == [f"e{n}" for n in range(10)], "claimable at once, oldest first, in a 60 s lease"
    assert not list((tmp_path / "spool.db-owners").glob("*.lock")), (
        "dead and closed owners leave no lock"
    )


def test_a_claimer_that_closes_gives_its_rows_back_at_once(tmp_path) -> None:
    path = tmp_path / "spool.db"
    _spool_ten(path)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    go_on = context.Event()
    child = context.Process(target=_claim_then_close, args=(str(path), sender, go_on))
    child.start()
    assert receiver.poll(60) and len(receiver.recv()) == 10
    with Spool(path) as other:
        assert not other.pending("http") and other.claim("http", 100) == []
        go_on.set()
        child.join(30)
        assert child.exitcode == 0
        assert len(other.claim("http", 100)) == 10


def _claim_in_forked_child(spool: Spool) -> None:
    """Use the inherited spool, then close it: neither may touch the parent's rows or lock."""
    ids = [item.envelope.event_id for item in spool.claim("http", 100)]
    spool.close()
    os._exit(0 if ids == [f"e{n}" for n in range(5, 10)] else 1)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()")
def test_a_forked_child_does_not_take_or_free_its_living_parents_rows(tmp_path) -> None:
    path = tmp_path / "spool.db"
    _spool_ten(path)
    spool = Spool(path)
    assert len(spool.claim("http", 5)) == 5
    child = multiprocessing.get_context("fork").Process(
        target=_claim_in_forked_child, args=(spool,)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0, "the child claimed only the five rows nobody held"
    with Spool(path) as fresh:
        back = [item.envelope.event_id for item in fresh.claim("http", 100)]
    assert back == [f"e{n}" for n in range(5, 10)], "the parent still holds its five"
    spool.close()


def test_without_fcntl_leases_alone_protect_claims(tmp_path, clock, monkeypatch) -> None:
    from alertkit.spool import files as _spool_files

    monkeypatch.setattr(_spool_files, "_fcntl", None)
    path = tmp_path / "spool.db"
    one = Spool(path, lease_seconds=30, clock=clock)
    two = Spool(path, lease_seconds=30, clock=clock)
    one.put("http", envelope(1), "down")
    assert len(one.claim("http", 10)) == 1
    assert two.claim("http", 10) == []
    clock.now += 31
    assert len(two.claim("http", 10)) == 1, "the lease ran out"
    assert not (tmp_path / "spool.db-owners").exists()
    one.close()
    two.close()


# -- bounds, counts after close ------------------------------------------------------------------------


def test_eviction_counts_stay_readable_after_close(tmp_path, clock) -> None:
    spool = Spool(tmp_path / "spool.db", max_events=2, clock=clock)
    for n in range(5):
        spool.put("http", envelope(n, created=T0 + n), "down")
    assert spool.evicted() == {"http": 3}
    spool.close()
    assert spool.evicted() == {"http": 3}


# -- damaged files -------------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> bytes:
    if how == "garbage":
        path.write_bytes(os.urandom(64 * 1024))
    elif how == "truncated":
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
    else:  # a zeroed header, as after a bad sector or a half-done copy
        with path.open("r+b") as file:
            file.write(b"\0" * 100)
    return path.read_bytes()


def _spool_many(path: Path, count: int = 2000) -> None:
    with Spool(path) as spool:
        spool.put_many("http", [envelope(n, created=T0 + n) for n in range(count)], "down")


@pytest.mark.parametrize("how", ["garbage", "truncated", "zeroed header"])
def test_a_damaged_file_is_moved_aside_and_a_fresh_spool_starts(tmp_path, how, caplog) -> None:
    path = tmp_path / "spool.db"
    _spool_many(path)
    damaged = _damage(path, how)
    with Spool(path) as spool:
        assert spool.counts() == {}, "a fresh, empty spool"
        spool.put("http", envelope(1), "down")
        assert spool.counts() == {"http": 1}
        (moved,) = spool.quarantined
    assert moved.parent == tmp_path and moved.name.startswith("spool.db.corrupt-20")
    assert moved.read_bytes() == damaged, "kept as it was, for inspection"
    assert "is damaged" in caplog.text and moved.name in caplog.text
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_damaged_file_is_left_alone_when_not_recovering(tmp_path) -> None:
    path = tmp_path / "spool.db"
    _spool_many(path, 10)
    damaged = _damage(path, "zeroed header")
    with Spool(path, recover=False) as spool, pytest.raises(SpoolCorruptError, match="damaged"):
        spool.counts()
    assert path.read_bytes() == damaged and list(tmp_path.glob("*.corrupt-*")) == []


def test_the_readable_part_of_a_truncated_spool_can_be_salvaged(tmp_path) -> None:
    from alertkit.spool.files import salvage

    path = tmp_path / "spool.db"
    _spool_many(path)
    _damage(path, "truncated")
    rows, _, damaged = salvage(path)
    assert damaged and 0 < len(rows) < 2000
    ids = [row[0] for row in rows]
    assert ids == sorted(set(ids)), "each row once, in id order"
    messages = set()
    for row in rows:
        with contextlib.suppress(msgspec.DecodeError):  # a row may sit on a damaged page
            messages.add(msgspec.json.decode(row[-1])["event"]["eventMessage"])
    assert messages and messages <= {f"boom {n:06d}" for n in range(2000)}


def test_a_spool_written_by_the_previous_version_is_upgraded_in_place(tmp_path) -> None:
    path = tmp_path / "spool.db"
    _spool_ten(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as version 1 left it
        conn.executescript("DROP TABLE owners; DROP INDEX spool_lease; PRAGMA user_version = 1;")
    with Spool(path) as spool:
        assert len(spool.claim("http", 4)) == 4
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (2,)
            assert conn.execute("SELECT COUNT(*) FROM owners").fetchone() == (1,)
    with Spool(path) as again:
        assert len(again.claim("http", 100)) == 10, "the closed spool gave its leases back"


def _start_on_damaged(path: str, worker: int, together: Any) -> None:
    together.wait(30)
    with Spool(path) as spool:
        spool.put("http", envelope(worker, event_id=f"worker-{worker}"), "down")


def test_workers_starting_together_on_a_damaged_file_share_one_fresh_spool(tmp_path) -> None:
    path = tmp_path / "spool.db"
    _spool_many(path, 200)
    damaged = _damage(path, "zeroed header")
    context = multiprocessing.get_context("spawn")
    together = context.Barrier(4)
    workers = [
        context.Process(target=_start_on_damaged, args=(str(path), w, together)) for w in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0] * 4
    # (The file's companions go with it: a worker that opened it first may have left a journal.)
    companions = ("-wal", "-shm", "-journal")
    moved_aside = [
        p for p in tmp_path.glob("spool.db.corrupt-*") if not p.name.endswith(companions)
    ]
    assert len(moved_aside) == 1, "moved aside once, not once per worker"
    (moved,) = moved_aside
    assert moved.read_bytes() == damaged
    with Spool(path) as spool:
        assert {row["event_id"] for row in spool.list(limit=10)} == {
            f"worker-{w}" for w in range(4)
        }
