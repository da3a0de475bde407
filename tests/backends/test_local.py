"""LocalBackend: the embedded SQLite inbox that is the default destination."""

from __future__ import annotations

import sqlite3

import pytest

from alertkit import Client
from alertkit.backends.local import LocalBackend, read_events
from alertkit.errors import ConfigError


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
    from alertkit.models import AppEvent, Envelope

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
