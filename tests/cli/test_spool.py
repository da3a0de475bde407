"""``alertkit spool list | replay | purge`` against a real spool file and a scripted event API."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Iterator, Sequence

import pytest

from alertkit.backends import registry
from alertkit.backends.base import BaseBackend
from alertkit.cli import main
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.outcomes import Outcome, RetryLater
from alertkit.spool.store import Spool, default_spool_path
from tests.standins.http import Reply, ScriptedServer

T0 = 1_800_000_000.0


def envelope(n: int) -> Envelope:
    event = AppEvent(
        api_key="app-key-secret",
        classification="issue",
        event_type="PaymentDeclined",
        event_message=f"card declined for order {n}",
        log_level="error",
        event_time=int((T0 + n) * 1000),
    )
    return Envelope(event=event, created=T0 + n, details={"order": n})


@pytest.fixture
def spooled() -> Iterator[list[Envelope]]:
    """Three events spooled for the ``http`` backend and one for ``slack``, in the default file."""
    envelopes = [envelope(n) for n in range(3)]
    with Spool(clock=lambda: T0 + 10) as spool:
        for item in envelopes:
            spool.put("http", item, "deadline of 120s exceeded")
        spool.put("slack", envelope(9), "circuit open")
    yield envelopes


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def api(server: ScriptedServer) -> str:
    return f"{server.url}/v1/events?api_key=k"


def counts() -> dict[str, int]:
    with Spool() as spool:
        return spool.counts()


def test_list_on_a_fresh_machine_says_empty_and_creates_nothing(capsys) -> None:
    assert main(["spool", "list"]) == 0
    assert "0 event(s)" in capsys.readouterr().out
    assert not default_spool_path().exists()


def test_list_shows_rows_in_replay_order_without_secrets(spooled, capsys) -> None:
    assert main(["spool", "list"]) == 0
    out = capsys.readouterr().out
    assert "4 event(s)" in out and "http: 3" in out and "slack: 1" in out
    lines = [line for line in out.splitlines() if "PaymentDeclined" in line]
    assert [line.split("order ")[-1] for line in lines] == ["0", "1", "2", "9"]
    assert "deadline of 120s exceeded" in out
    assert "app-key-secret" not in out


def test_list_json_filters_by_backend(spooled, capsys) -> None:
    assert main(["spool", "list", "--json", "--backend", "http"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["event_id"] for row in data["events"]] == [e.event_id for e in spooled]
    assert data["counts"] == {"http": 3}
    assert {row["event"]["apiKey"] for row in data["events"]} == {"****"}


def test_list_reports_evictions(capsys, tmp_path) -> None:
    path = tmp_path / "small.db"
    with Spool(path, max_events=2) as spool:
        for n in range(5):
            spool.put("http", envelope(n), "down")
    assert main(["spool", "list", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 event(s)" in out and "evicted" in out and "http: 3" in out


def test_purge_needs_yes_when_not_interactive(spooled, capsys) -> None:
    assert main(["spool", "purge"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert counts() == {"http": 3, "slack": 1}
    assert main(["spool", "purge", "--backend", "slack", "--yes"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert counts() == {"http": 3}
    assert main(["spool", "purge", "--yes"]) == 0
    assert counts() == {}


def test_replay_delivers_in_order_with_the_same_event_ids(spooled, server, capsys) -> None:
    assert main(["spool", "replay", "--backend", "http", "--url", api(server)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "replayed 3, failed 0, rejected 0"
    assert [r.headers["idempotency-key"] for r in server.requests] == [e.event_id for e in spooled]
    bodies = [r.json() for r in server.requests]
    assert [b["eventMessage"] for b in bodies] == [e.event.event_message for e in spooled]
    assert {b["apiKey"] for b in bodies} == {"k"}, "the replaying backend's key is used"
    assert counts() == {"slack": 1}


def test_replay_against_a_failing_server_keeps_the_rows_then_delivers_them(
    spooled, server, capsys
) -> None:
    server.set_script([Reply(500, {"message": "database unavailable"})])
    argv = ["spool", "replay", "--backend", "http", "--url", api(server), "--attempts", "2"]
    started = time.monotonic()
    assert main([*argv, "--backoff", "0.3"]) == 1
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert "replayed 0, failed 3, rejected 0" in captured.out
    assert "database unavailable" in captured.err and "3 event(s) stay" in captured.err
    assert len(server.requests) == 6, "two tries of the batch"
    assert 0.3 <= elapsed < 10, "one wait of --backoff between them"
    assert counts() == {"http": 3, "slack": 1}
    with Spool() as spool:
        assert {item["attempts"] for item in spool.list("http")} == {1}
        assert {item["leased"] for item in spool.list("http")} == {False}

    server.set_script([Reply(200)])
    assert main(argv) == 0
    assert "replayed 3, failed 0, rejected 0" in capsys.readouterr().out
    assert counts() == {"slack": 1}


def test_replay_honours_retry_after(spooled, server, capsys) -> None:
    server.set_script([Reply(429, {"message": "slow down"}, {"Retry-After": "2"}), Reply(200)])
    argv = ["spool", "replay", "--backend", "http", "--url", api(server), "--backoff", "0"]
    started = time.monotonic()
    assert main(argv) == 0
    assert 2.0 <= time.monotonic() - started < 10, "the server's wait, not --backoff's"
    assert "replayed 3" in capsys.readouterr().out
    assert len(server.requests) == 4, "the first request got 429, then one retry and the rest"


def test_rejected_events_are_dropped_and_reported(spooled, server, capsys) -> None:
    server.set_script([Reply(400, {"message": "eventType missing"})])
    assert main(["spool", "replay", "--backend", "http", "--url", api(server)]) == 1
    captured = capsys.readouterr()
    assert "replayed 0, failed 0, rejected 3" in captured.out
    assert "eventType missing" in captured.err
    assert counts() == {"slack": 1}


def test_replay_reads_backends_and_key_from_the_environment(
    spooled, server, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("ALERTKIT_BACKENDS", f"{server.url}/v1/events")
    monkeypatch.setenv("ALERTKIT_API_KEY", "env-key")
    assert main(["spool", "replay", "--progress"]) == 1, "slack has no backend here"
    captured = capsys.readouterr()
    assert "replayed 3, failed 0, rejected 0, skipped 1" in captured.out
    assert "\r" in captured.err and "3/3 100%" in captured.err
    assert {r.json()["apiKey"] for r in server.requests} == {"env-key"}
    assert counts() == {"slack": 1}


def test_replay_with_nothing_spooled_succeeds(server, capsys) -> None:
    assert main(["spool", "replay", "--url", api(server)]) == 0
    assert "replayed 0, failed 0, rejected 0" in capsys.readouterr().out
    assert server.requests == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "spool",
                "replay",
                "--backend",
                "pagerduty",
                "--url",
                "http://127.0.0.1:9/v1?api_key=k",
            ],
            "pagerduty",
        ),
        (["spool", "replay", "--url", "nosuch://x"], "nosuch"),
        (["spool", "replay", "--url", "http://127.0.0.1:9/v1/events"], "api_key"),
    ],
)
def test_bad_replay_configuration_is_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and message in err


@pytest.mark.parametrize("action", ["list", "purge", "replay"])
def test_a_file_that_is_not_a_spool_is_one_line_and_exit_2(action, tmp_path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database " * 100)
    extra = ["--yes"] if action == "purge" else []
    assert main(["spool", action, "--path", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "not a database" in err
    assert path.read_text().startswith("not a database"), "the file is left as it was"


@pytest.mark.parametrize(
    "argv",
    [["spool"], ["spool", "list", "--limit", "0"], ["spool", "replay", "--backoff", "x"]],
)
def test_bad_arguments_exit_2(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


class _Interrupting(BaseBackend):
    scheme = "interrupting"
    max_batch = 10

    @classmethod
    def _options_from_url(cls, parts, query):  # type: ignore[no-untyped-def]
        return {"name": "http"}

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        # Ctrl-C reaches the main thread while the worker's thread is inside send.
        signal.raise_signal(signal.SIGINT)
        return [RetryLater("interrupted")] * len(batch)


def test_ctrl_c_during_replay_gives_the_rows_back_at_once(spooled, monkeypatch, capsys) -> None:
    monkeypatch.setitem(registry._CUSTOM, "interrupting", _Interrupting)
    assert main(["spool", "replay", "--backend", "http", "--url", "interrupting://"]) == 130
    assert "interrupted" in capsys.readouterr().err
    with Spool() as spool:
        assert len(spool.claim("http", 10)) == 3, "no lease is left on them"


@pytest.mark.parametrize("action", ["list", "purge", "replay"])
@pytest.mark.parametrize("problem", ["directory", "missing", "sqlite but not a spool"])
def test_a_file_that_cannot_be_a_spool_is_one_line_and_exit_2(
    action, problem, tmp_path, capsys
) -> None:
    path = tmp_path / "given.db"
    if problem == "directory":
        path.mkdir()
    elif problem == "sqlite but not a spool":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
    extra = ["--yes"] if action == "purge" else []
    assert main(["spool", action, "--file", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and str(path) in err and "Traceback" not in err
    assert problem != "missing" or not path.exists(), "nothing is created"


@pytest.mark.parametrize("action", ["purge", "replay"])
def test_a_damaged_spool_is_refused_by_purge_and_replay_and_left_as_it_is(
    action, tmp_path, capsys
) -> None:
    path = tmp_path / "spool.db"
    damaged = _damaged_spool(path)
    extra = ["--yes"] if action == "purge" else []
    assert main(["spool", action, "--file", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "damaged" in err
    assert path.read_bytes() == damaged and not list(tmp_path.glob("*.corrupt-*"))


def _damaged_spool(path) -> bytes:
    """Four hundred events for ``http`` in a spool file, then cut in half (a disk incident)."""
    with Spool(path, clock=lambda: T0 + 100) as spool:
        spool.put_many("http", [envelope(n) for n in range(400)], "deadline of 120s exceeded")
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)
    return path.read_bytes()


def test_list_reads_what_is_readable_from_a_spool_the_application_moved_aside(
    tmp_path, capsys
) -> None:
    path = tmp_path / "spool.db"
    _damaged_spool(path)
    with Spool(path) as app_spool:  # the application starting on the damaged file
        app_spool.counts()
        (moved,) = app_spool.quarantined
    assert main(["spool", "list", "--file", str(moved), "--json", "--limit", "1000"]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert captured.err.count("\n") == 1 and "damaged" in captured.err
    messages = [row["event"].get("eventMessage") for row in shown["events"]]
    assert 0 < len(messages) < 400, "what is readable, not nothing and not everything"
    assert set(messages) <= {f"card declined for order {n}" for n in range(400)} | {None}
    assert "app-key-secret" not in captured.out
    assert shown["counts"] == {"http": len(messages)}


def test_list_of_a_garbage_file_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "spool.db.corrupt-20270101T000000Z"
    path.write_bytes(b"\xff" * 8192)
    assert main(["spool", "list", "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "not a spool database" in err
