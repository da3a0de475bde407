"""Fingerprints: the grouping the application chooses drives storm control and dedup keys."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from alertkit import AlertHandler, AppEvent, Client
from alertkit.capture import scope as scope_api
from alertkit.model.event import encode_event
from alertkit.model.grouping import DEFAULT, default_fingerprint, normalize
from alertkit.policy.filters import HookEvent
from alertkit.policy.storm import fingerprint
from alertkit.testing import MemoryBackend


class Notifier(MemoryBackend):
    scheme = "notifier"
    storm_controlled = True


@pytest.fixture
def backends() -> tuple[Notifier, MemoryBackend]:
    return Notifier(name="slack"), MemoryBackend(name="inbox")


@pytest.fixture
def make_client(backends: tuple[Notifier, MemoryBackend]) -> Iterator[Any]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(
            backends=list(backends), sample_system=False, register_atexit=False, **options
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(2)


@pytest.fixture
def make_logger() -> Iterator[Any]:
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def make(client: Client, name: str = "tests.fingerprint.db") -> logging.Logger:
        log = logging.getLogger(name)
        log.propagate = False
        handler = AlertHandler(client=client)
        log.addHandler(handler)
        attached.append((log, handler))
        return log

    yield make
    for log, handler in attached:
        log.removeHandler(handler)


def test_extra_fingerprint_groups_all_database_timeouts(make_client, make_logger, backends):
    notifier, inbox = backends
    client = make_client()
    log = make_logger(client)
    log.error("query %s timed out", "orders", extra={"fingerprint": ["db-timeout"]})
    log.error("connection to %s timed out", "replica", extra={"fingerprint": ["db-timeout"]})
    assert client.flush(5)
    assert [e.fingerprint for e in inbox.envelopes] == [["db-timeout"], ["db-timeout"]]
    assert len(notifier.envelopes) == 1, "one group: the second is a storm repeat"
    assert inbox.envelopes[0].details == {}, "the fingerprint steers, it is no detail"


def test_default_element_splits_one_template_by_tenant(make_client, make_logger, backends):
    notifier, inbox = backends
    client = make_client()
    log = make_logger(client)
    for tenant in ("acme", "globex", "acme"):
        log.error("sync failed", extra={"fingerprint": [DEFAULT, tenant], "tenant": tenant})
    assert client.flush(5)
    own = "tests.fingerprint.db | sync failed | tests.fingerprint.db"
    assert [e.fingerprint for e in inbox.envelopes] == [
        [own, "acme"],
        [own, "globex"],
        [own, "acme"],
    ]
    assert [e.details["tenant"] for e in notifier.envelopes] == ["acme", "globex"]


def test_scope_fingerprint_applies_to_its_events_unless_they_bring_one(make_client, backends):
    _, inbox = backends
    client = make_client(storm_window=0)
    with client.scope() as request:
        assert request.fingerprint is None
        request.fingerprint = ["checkout", DEFAULT]
        with client.scope() as inner:
            assert inner.fingerprint == ["checkout", DEFAULT], "a nested scope inherits it"
        client.send_event_async(client.create_new_app_event(event_message="declined"))
        own = client.envelope_for(client.create_new_app_event(event_message="x"))
        own.fingerprint = ["mine"]
        client.send_event_async(own)
        assert scope_api.set_fingerprint("payments") is True
        assert request.fingerprint == ["payments"]
        with pytest.raises(TypeError, match="fingerprint"):
            request.fingerprint = 42  # type: ignore[assignment]
    assert scope_api.set_fingerprint(["x"]) is False, "outside a scope"
    assert client.flush(5)
    assert inbox.envelopes[0].fingerprint == ["checkout", "unknown | declined | "]
    assert inbox.envelopes[1].fingerprint == ["mine"]


def test_before_send_sets_the_fingerprint_without_changing_the_wire_format(make_client, backends):
    _, inbox = backends
    seen: list[Any] = []

    def before_send(event: HookEvent, hint: dict[str, Any]) -> AppEvent:
        seen.append(event.fingerprint)
        assert hint["envelope"].event is event
        if "timeout" in event.event_message:
            event.fingerprint = ["timeouts", DEFAULT]
        return event

    client = make_client(before_send=before_send, storm_window=0)
    log = logging.getLogger("tests.fingerprint.hook")
    log.propagate = False
    handler = AlertHandler(client=client)
    log.addHandler(handler)
    try:
        log.error("read timeout", extra={"fingerprint": "from-extra"})
        log.error("other")
    finally:
        log.removeHandler(handler)
    assert client.flush(5)
    assert seen == [["from-extra"], None], "the hook sees the fingerprint so far"
    first, second = inbox.envelopes
    assert type(first.event) is AppEvent, "the wire event is a plain AppEvent again"
    assert first.fingerprint == [
        "timeouts",
        "tests.fingerprint.hook | read timeout | tests.fingerprint.hook",
    ]
    assert second.fingerprint is None
    wire = msgspec.json.decode(encode_event(first.event))
    assert "fingerprint" not in wire and set(wire) <= set(
        msgspec.json.decode(encode_event(second.event))
    ) | {"eventStacktrace"}


def test_before_send_returning_a_new_event_keeps_the_fingerprint(make_client, backends):
    _, inbox = backends

    def before_send(event: HookEvent, hint: dict[str, Any]) -> AppEvent:
        return msgspec.structs.replace(event, event_message="replaced")

    client = make_client(before_send=before_send, storm_window=0)
    envelope = client.envelope_for(client.create_new_app_event(event_message="x"))
    envelope.fingerprint = ["kept"]
    client.send_event(envelope, timeout=5)
    [delivered] = inbox.envelopes
    assert delivered.event.event_message == "replaced" and type(delivered.event) is AppEvent
    assert delivered.fingerprint == ["kept"]


def test_storm_key_prefers_the_fingerprint_over_the_dedup_key() -> None:
    from alertkit import Envelope

    event = AppEvent(api_key="", classification="issue", event_type="T", event_message="m")
    keyed = Envelope(event=event, incident_key="k1")
    assert fingerprint(keyed) == "key:k1"
    assert default_fingerprint(keyed) == "k1"
    keyed.fingerprint = ["a", "b"]
    assert fingerprint(keyed) == "fp:a\x1fb"


def test_digest_names_the_fingerprint(make_client, make_logger, backends):
    notifier, _ = backends
    client = make_client(storm_window=0.2)
    log = make_logger(client)
    for i in range(3):
        log.error("timeout %d", i, extra={"fingerprint": ["db-timeout"]})
    assert client.flush(5)
    client.shutdown(2)  # ends the window: the digest goes out
    digests = [e for e in notifier.envelopes if e.digest]
    assert len(digests) == 1
    assert digests[0].details["fingerprint"] == "db-timeout"
    assert digests[0].details["storm_count"] == 3


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("one", ["one"]),
        (["a", 2, None], ["a", "2", "None"]),
        ([], None),
        (42, None),
        (b"bytes", None),
        (["x" * 500], ["x" * 200]),
    ],
)
def test_fingerprints_given_by_the_application_are_normalized(given, expected) -> None:
    assert normalize(given) == expected


def test_a_fingerprint_is_scrubbed_and_bounded(make_client, make_logger, backends):
    _, inbox = backends
    client = make_client(storm_window=0)
    log = make_logger(client)
    log.error("x", extra={"fingerprint": ["password=hunter2", *[str(i) for i in range(50)]]})
    assert client.flush(5)
    [envelope] = inbox.envelopes
    assert "hunter2" not in envelope.fingerprint[0]
    assert len(envelope.fingerprint) == 20
