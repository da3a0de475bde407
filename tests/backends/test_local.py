"""LocalBackend: the embedded SQLite inbox that is the default destination."""

from __future__ import annotations

import sqlite3

import pytest

from alertkit import Client
from alertkit.backends.local import LocalBackend, read_events
from alertkit.model.errors import ConfigError
from alertkit.model.outcomes import Delivered, Rejected, RetryLater


def test_events_are_rows_with_json_time_level_and_type(tmp_path) -> None:
    path = tmp_path / "inbox.db"
    client = Client(backends=[f"local://{path}"], sample_system=False, register_atexit=False)
    client.log(
        {"eventtype": "logon issue", "eventmessage": "refresh", "cart": 3}, "info", exc_info=False
    )
    client.send_event_async(
        client.create_new_app_event("fatal", event_type="Crash", event_message="boom")
    )
    assert client.flush(5)
    client.shutdown(1)
    rows = read_events(path)
    assert [(r["level"], r["event_type"]) for r in rows] == [
        ("fatal", "Crash"),
        ("info", "logon issue"),
    ]
    assert rows[1]["details"] == {"cart": 3}
    assert rows[0]["event"]["eventMessage"] == "boom"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_replayed_event_ids_are_stored_once(tmp_path) -> None:
    from alertkit.model.event import AppEvent, Envelope

    backend = LocalBackend(tmp_path / "x.db")
    env = Envelope(
        event=AppEvent(
            api_key="", classification="c", event_type="t", event_message="m", event_time=1
        )
    )
    backend.send([env])
    backend.send([env])
    assert len(read_events(tmp_path / "x.db")) == 1
    backend.close()
    backend.close()


def test_default_path_is_under_alertkit_home(alertkit_home) -> None:
    assert LocalBackend().path == alertkit_home / "events.db"
    assert LocalBackend.from_url("local:///var/tmp/a.db").path.as_posix() == "/var/tmp/a.db"


def test_a_directory_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        LocalBackend(tmp_path)


def _event(client: Client, message: str = "boom"):
    return client.create_new_app_event("error", event_message=message)


def test_an_unwritable_inbox_path_is_rejected_at_once_with_the_reason(tmp_path) -> None:
    """A path that can never be written (here a parent is a file) is not retried for the deadline."""
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "events.db"
    client = Client(backends=[f"local://{path}"], sample_system=False, register_atexit=False)
    results = client.send_event(_event(client), timeout=5)
    stats = client.stats()["local"]
    client.shutdown(1)
    assert results["local"] == Rejected(
        f"cannot write the inbox {path}: a parent is a file, not a directory"
    )
    assert (stats["rejected"], stats["retried"], stats["dropped"]) == (1, 0, 0)
    assert stats["last_failure"] == results["local"].reason


def test_a_read_only_inbox_is_rejected_at_once(tmp_path) -> None:
    """SQLite's "attempt to write a readonly database" cannot be cured by retrying."""
    backend = LocalBackend(tmp_path / "ro.db")
    client = Client(backends=[backend], sample_system=False, register_atexit=False)
    assert isinstance(client.send_event(_event(client), timeout=5)["local"], Delivered)
    with backend._lock:  # the database refuses writes from now on, as on a read-only mount
        backend._connection().execute("PRAGMA query_only = ON")
    results = client.send_event(_event(client), timeout=5)
    stats = client.stats()["local"]
    client.shutdown(1)
    assert isinstance(results["local"], Rejected)
    assert results["local"].reason.startswith(f"cannot write the inbox {backend.path}: read-only")
    assert stats["retried"] == 0


def test_a_full_disk_is_retried_and_named(tmp_path) -> None:
    """A full disk may clear up: retried, and the reason says "disk full" rather than SQLite's
    follow-up error about a transaction it already ended."""
    backend = LocalBackend(tmp_path / "full.db")
    backend.send([])  # create the database
    conn = backend._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page
    client = Client(backends=[backend], sample_system=False, register_atexit=False)
    [outcome] = backend.send([client.envelope_for(_event(client, "x" * 100_000))])
    client.shutdown(1)
    assert isinstance(outcome, RetryLater)
    assert outcome.reason.startswith(f"cannot write the inbox {backend.path}: disk full")


def test_the_inbox_stores_every_breadcrumb_and_the_fingerprint(tmp_path) -> None:
    import alertkit

    path = tmp_path / "inbox.db"
    client = Client(backends=[f"local://{path}"], sample_system=False, register_atexit=False)
    for i in range(50):
        alertkit.add_breadcrumb(f"step {i}")
    envelope = client.envelope_for(client.create_new_app_event("error", event_message="boom"))
    envelope.fingerprint = ["db-timeout", "acme"]
    client.send_event(envelope, timeout=5)
    client.shutdown(1)
    [row] = read_events(path)
    assert [c["message"] for c in row["breadcrumbs"]] == [f"step {i}" for i in range(50)]
    assert row["fingerprint"] == ["db-timeout", "acme"]
    assert "breadcrumbs" not in row["event"], "the wire JSON is unchanged"


def test_an_inbox_of_the_first_format_gains_the_new_columns(tmp_path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
        "UNIQUE, time_ms INTEGER NOT NULL, level TEXT, event_type TEXT NOT NULL, "
        "classification TEXT, message TEXT, logger TEXT, json TEXT NOT NULL, details TEXT);"
        "INSERT INTO events (event_id, time_ms, event_type, json) VALUES ('a', 1, 't', '{}');"
    )
    conn.commit()
    conn.close()
    [old] = read_events(path)
    assert old["breadcrumbs"] == [] and old["fingerprint"] is None
    client = Client(backends=[f"local://{path}"], sample_system=False, register_atexit=False)
    envelope = client.envelope_for(client.create_new_app_event("error", event_message="new"))
    envelope.fingerprint = ["g"]
    client.send_event(envelope, timeout=5)
    client.shutdown(1)
    assert [r["fingerprint"] for r in read_events(path)] == [["g"], None]
