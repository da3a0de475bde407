"""before_send and sampling: user filters that never break delivery."""

from __future__ import annotations

import logging

import msgspec
import pytest

from alertkit import Client, Skipped
from alertkit.testing import MemoryBackend


def test_before_send_can_drop_and_edit() -> None:
    backend = MemoryBackend()

    def before_send(event, hint):
        if "drop me" in event.event_message:
            return None
        assert hint["envelope"].event is event
        return msgspec.structs.replace(event, event_message=event.event_message.upper())

    client = Client(
        backends=[backend], before_send=before_send, sample_system=False, register_atexit=False
    )
    dropped = client.send_event(client.create_new_app_event(event_message="drop me"), timeout=5)
    client.send_event(client.create_new_app_event(event_message="keep me"), timeout=5)
    assert isinstance(dropped["pipeline"], Skipped)
    assert [e.event_message for e in backend.events] == ["KEEP ME"]
    client.shutdown(1)


def test_a_failing_before_send_never_breaks_delivery(caplog) -> None:
    backend = MemoryBackend()

    def before_send(event, hint):
        raise RuntimeError("user bug")

    client = Client(
        backends=[backend], before_send=before_send, sample_system=False, register_atexit=False
    )
    with caplog.at_level(logging.WARNING, logger="alertkit.hooks"):
        client.send_event(client.create_new_app_event(event_message="still sent"), timeout=5)
    assert [e.event_message for e in backend.events] == ["still sent"]
    assert any("user bug" in r.getMessage() for r in caplog.records)
    client.shutdown(1)


def test_sampling_keeps_about_the_rate() -> None:
    backend = MemoryBackend()
    client = Client(
        backends=[backend],
        sample_rate=0.25,
        storm_window=0,
        sample_system=False,
        register_atexit=False,
    )
    for i in range(2000):
        client.send_event_async(client.create_new_app_event(event_message=str(i)))
    assert client.flush(10)
    assert 300 < len(backend.events) < 700
    client.shutdown(1)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("sample_rate", 1.5, ValueError),
        ("sample_rate", "all", TypeError),
        ("before_send", "nope", TypeError),
        ("storm_window", -1, ValueError),
        ("spool", "yes", TypeError),
    ],
)
def test_bad_filter_options_raise_at_construction(option, value, error) -> None:
    with pytest.raises(error, match=option):
        Client(register_atexit=False, **{option: value})
