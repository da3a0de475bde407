"""Storm control: the first occurrence goes at once, repeats are counted, a digest follows; only
backends that message people are controlled, sinks get every event."""

from __future__ import annotations

import logging
import time

from alertkit import Client, Skipped
from alertkit.policy.storm import StormControl, fingerprint
from alertkit.testing import MemoryBackend


class Notifier(MemoryBackend):
    scheme = "notifier"
    storm_controlled = True


def make(window: float) -> tuple[Client, Notifier, MemoryBackend]:
    notifier, sink = Notifier(name="slack"), MemoryBackend(name="inbox")
    client = Client(
        backends=[notifier, sink], storm_window=window, sample_system=False, register_atexit=False
    )
    return client, notifier, sink


def log_errors(client: Client, count: int, name: str = "tests.storm.app") -> None:
    from alertkit import AlertHandler

    logger = logging.getLogger(name)
    logger.propagate = False
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    for i in range(count):
        logger.error("Payment declined for order %s", i)
    logger.removeHandler(handler)


def test_a_storm_becomes_one_alert_and_one_digest() -> None:
    client, notifier, sink = make(window=0.5)
    log_errors(client, 50)
    assert client.flush(5)
    assert len(notifier.events) == 1, "the first occurrence went at once, repeats were held"
    assert len(sink.events) == 50, "the inbox still has every event"
    time.sleep(0.6)
    assert client.flush(5)
    deadline = time.monotonic() + 5
    while len(notifier.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    digest = notifier.envelopes[1]
    assert digest.digest and "x 50 in the last" in digest.event.event_message
    assert digest.details["storm_count"] == 50
    assert len(sink.events) == 50, "the digest is not stored twice in sinks"
    client.shutdown(1)


def test_pending_digests_are_sent_at_shutdown() -> None:
    client, notifier, _ = make(window=60)
    log_errors(client, 5)
    client.shutdown(2)
    assert [e.digest for e in notifier.envelopes] == [False, True]
    assert "x 5 in the last" in notifier.events[1].event_message


def test_repeats_report_skipped_for_the_controlled_backend_only() -> None:
    client, _, _ = make(window=60)
    event = client.create_new_app_event("error", event_type="Boom", event_message="same")
    first = client.send_event(event, timeout=5)
    again = client.send_event(
        client.create_new_app_event("error", event_type="Boom", event_message="same"), timeout=5
    )
    assert not isinstance(first["slack"], Skipped)
    assert isinstance(again["slack"], Skipped) and "storm" in again["slack"].reason
    assert not isinstance(again["inbox"], Skipped)
    client.shutdown(1)


def test_different_templates_are_different_storms() -> None:
    client, notifier, _ = make(window=60)
    log_errors(client, 3, "tests.storm.a")
    log_errors(client, 3, "tests.storm.b")
    assert client.flush(5)
    assert len(notifier.events) == 2
    client.shutdown(0.5)


def test_window_zero_turns_it_off() -> None:
    client, notifier, _ = make(window=0)
    log_errors(client, 10)
    assert client.flush(5)
    assert len(notifier.events) == 10
    client.shutdown(1)


def test_fingerprint_prefers_the_dedup_key() -> None:
    from alertkit.model.event import AppEvent, Envelope

    event = AppEvent(api_key="", classification="issue", event_type="T", event_message="m")
    assert fingerprint(Envelope(event=event, incident_key="k1")) == "key:k1"
    assert fingerprint(Envelope(event=event, template="t %s", logger_name="l")) == "T\x1ft %s\x1fl"


def test_metrics_and_lifecycle_pass_untouched() -> None:
    from alertkit.model.event import AppEvent, Envelope

    storm = StormControl(60)
    event = AppEvent(api_key="", classification="issue", event_type="T", event_message="m")
    for _ in range(3):
        assert not storm(Envelope(event=event, kind="metric")).storm_suppressed


def test_without_a_storm_controlled_backend_nothing_is_marked() -> None:
    sink = MemoryBackend(name="inbox")
    client = Client(backends=[sink], storm_window=60, sample_system=False, register_atexit=False)
    log_errors(client, 20)
    assert client.flush(5)
    assert len(sink.envelopes) == 20
    assert not any(e.storm_suppressed for e in sink.envelopes), "no work for nobody"
    client.shutdown(1)
