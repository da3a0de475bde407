"""The relay in process: acknowledgement rules, dead letters, the seams for fleet policy."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from alertkit import AlertHandler, Client, RetryPolicy
from alertkit.backends.base import Backend
from alertkit.cli import main
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.relay import Relay
from alertkit.testing.stand_in import Reply, ScriptedServer
from tests.relay.fleet import STREAM, Sink, dead_letters, pending, stream_url, tally, wait_until
from tests.standins import redis as servers
from tests.standins.pagerduty import PagerDutyStandIn

redis_server_session = servers.redis_server_session
redis_server = servers.redis_server

FAST = RetryPolicy(backoff=0.01, max_backoff=0.05, max_attempts=2, deadline=1.0)


@pytest.fixture
def produce(redis_server) -> Iterator[Callable[[Sequence[str]], list[str]]]:
    """Log messages through a client whose only backend is the stream; returns them."""
    client = Client(
        backends=[stream_url(redis_server)],
        sample_system=False,
        register_atexit=False,
        storm_window=0,
    )

    def send(messages: Sequence[str]) -> list[str]:
        for message in messages:
            client.log({"eventmessage": message}, "error", exc_info=False)
        assert client.flush(10)
        return list(messages)

    yield send
    client.shutdown(2)


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    made: list[Relay] = []
    yield made
    for relay in made:
        relay.stop(5)


def test_every_entry_is_delivered_then_acknowledged(redis_server, produce, relays):
    sent = produce([f"event {i}" for i in range(40)])
    with Sink() as sink:
        relay = Relay(stream_url(redis_server), [sink.url], claim_after=5, retry=FAST)
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 40)
        counts = tally(sent, sink, redis_server)
        assert (counts.delivered, counts.duplicated, counts.lost) == (40, 0, 0), counts
        assert pending(redis_server) == 0
        assert relay.stats()["destinations"]["http"]["delivered"] == 40


def test_a_400_goes_to_the_dead_letter_stream_with_its_reason_and_the_rest_flow(
    redis_server, produce, relays
):
    sent = produce(["fine 1", "poison", "fine 2", "fine 3"])

    def answer(message: str) -> Reply:
        if message == "poison":
            return Reply(400, {"error": "invalid event: eventType missing"})
        return Reply(200)

    with Sink(answer) as sink:
        relay = Relay(stream_url(redis_server), [sink.url], claim_after=5, retry=FAST)
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 4)
        [letter] = dead_letters(redis_server)
        counts = tally(sent, sink, redis_server)
    assert "400" in letter["reason"]
    assert letter["destination"] == "http"
    assert letter["envelope"].event.event_message == "poison"
    assert letter["id"] == letter["envelope"].event_id  # the event keeps its id
    assert (counts.delivered, counts.dead_lettered, counts.lost) == (3, 1, 0), counts
    assert pending(redis_server) == 0


def test_an_entry_without_an_outcome_stays_pending_then_is_dead_lettered_after_max_deliveries(
    redis_server, produce, relays
):
    """A destination that always fails: the pipeline gives up, the entry is not acknowledged,
    is claimed again after claim_after, and after max_deliveries lands in the dead letters."""
    produce(["never delivered"])
    with Sink(lambda message: Reply(503)) as sink:
        relay = Relay(
            stream_url(redis_server),
            [sink.url],
            claim_after=0.3,
            max_deliveries=2,
            retry=RetryPolicy(max_attempts=1, deadline=0.2, circuit_threshold=0),
        )
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["dead_lettered"] == 1)
        assert len(sink.server.requests) >= 2  # delivered twice before giving up
    [letter] = dead_letters(redis_server)
    assert letter["reason"] == "delivered 2 times without an outcome"
    assert letter["envelope"].event.event_message == "never delivered"
    assert relay.stats()["left_pending"] >= 2
    assert pending(redis_server) == 0


def test_a_relay_spool_takes_what_cannot_be_delivered_and_the_entry_is_acknowledged(
    redis_server, produce, relays, tmp_path
):
    produce(["to the spool"])
    with Sink(lambda message: Reply(503)) as sink:
        relay = Relay(
            stream_url(redis_server),
            [sink.url],
            spool_path=tmp_path / "relay-spool.db",
            retry=RetryPolicy(max_attempts=1, deadline=0.2, circuit_threshold=0),
        )
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 1)
        assert relay.stats()["destinations"]["http"]["spooled"] >= 1
        assert sink.server.requests
    assert pending(redis_server) == 0


def test_the_screen_acknowledges_without_delivery_and_counts_why(redis_server, produce, relays):
    """The seam silences use: a reason means acknowledged, not delivered, counted."""
    produce(["keep", "mute me", "keep too"])

    def screen(envelope: Envelope, entry_id: str) -> str | None:
        return "silenced" if envelope.event.event_message.startswith("mute") else None

    with Sink() as sink:
        relay = Relay(stream_url(redis_server), [sink.url], screen=screen, retry=FAST)
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 3)
        assert sorted(sink.received) == ["keep", "keep too"]
    assert relay.stats()["screened_by"] == {"silenced": 1}
    assert pending(redis_server) == 0


def test_the_send_gate_holds_entries_pending_until_it_opens(redis_server, produce, relays):
    """The seam rate limits use: while the gate says wait, nothing is sent and the entries stay
    pending in the group; once it opens they are delivered and acknowledged."""
    opened = threading.Event()

    class Gate:
        def __init__(self) -> None:
            self.asked = 0

        def wait(self, backend: Backend, batch: Sequence[Envelope]) -> float:
            self.asked += 1
            return 0.0 if opened.is_set() else 0.1

    gate = Gate()
    produce(["held 1", "held 2"])
    with Sink() as sink:
        relay = Relay(stream_url(redis_server), [sink.url], gate=gate, retry=FAST)
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: gate.asked >= 3)
        assert not sink.server.requests
        assert pending(redis_server) == 2
        opened.set()
        assert wait_until(lambda: relay.stats()["acked"] == 2)
        assert sorted(sink.received) == ["held 1", "held 2"]


def test_storm_control_is_injectable_and_the_apps_marks_are_ignored(redis_server, relays):
    """The relays decide storms: an envelope the app marked as a storm repeat is delivered to
    a storm-controlled destination once the relay's own storm control lets it through."""
    from alertkit.backends.redis_stream import RedisStreamBackend
    from alertkit.model.event import AppEvent
    from alertkit.policy.storm import StormControl
    from alertkit.testing import MemoryBackend

    class Notifier(MemoryBackend):
        storm_controlled = True

    writer = RedisStreamBackend.from_url(stream_url(redis_server))
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type="E",
        event_message="m",
        log_level="error",
        event_time=1,
    )
    writer.send([Envelope(event, storm_suppressed=True)])
    writer.close()
    notifier = Notifier()
    calls: list[Envelope] = []

    class Counting(StormControl):
        def __call__(self, envelope: Envelope) -> Envelope:
            calls.append(envelope)
            return super().__call__(envelope)

    relay = Relay(stream_url(redis_server), [notifier], storm=Counting(60))
    relays.append(relay)
    relay.start()
    assert wait_until(lambda: relay.stats()["acked"] == 1)
    assert len(calls) == 1 and len(notifier.events) == 1


def test_bad_configuration_names_the_option(redis_server):
    url = stream_url(redis_server)
    with pytest.raises(ConfigError, match="--from"):
        Relay("redis://127.0.0.1:6379/0", ["local://"])
    with pytest.raises(ConfigError, match="no destination"):
        Relay(url)
    with pytest.raises(ConfigError, match="claim_after"):
        Relay(url, ["local://"], claim_after=0)
    with pytest.raises(ConfigError, match="max_deliveries"):
        Relay(url, ["local://"], max_deliveries=0)
    with pytest.raises(ConfigError, match="loop"):
        Relay(url, [url])


def test_alertkit_backends_names_the_destinations(redis_server, monkeypatch, produce, relays):
    produce(["from the environment"])
    with Sink() as sink:
        monkeypatch.setenv("ALERTKIT_BACKENDS", sink.url)
        relay = Relay(stream_url(redis_server), retry=FAST)
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 1)
        assert list(sink.received) == ["from the environment"]


def test_status_shows_groups_consumers_lag_dead_letters_and_deliveries(
    redis_server, produce, relays, capsys
):
    produce(["one", "two", "bad"])
    with Sink(lambda m: Reply(400) if m == "bad" else Reply(200)) as sink:
        relay = Relay(stream_url(redis_server), [sink.url], consumer="relay-a", retry=FAST)
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 3)
    assert relay.stop(5)
    produce(["unread"])  # after the relay stopped: the group's lag
    assert main(["relay", "status", "--from", stream_url(redis_server), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    [group] = status["groups"]
    assert status["dead_letters"] == 1 and status["length"] == 4
    assert group["name"] == "alertkit" and group["pending"] == 0
    assert group["lag"] == 1
    assert [c["name"] for c in group["consumers"]] == ["relay-a"]
    assert group["delivered"] == {"http": 2}
    assert main(["relay", "status", "--from", stream_url(redis_server)]) == 0
    table = capsys.readouterr().out
    assert "relay-a" in table and "lag 1" in table and "1 dead letters" in table
    assert f"{{{STREAM}}}" in table


@pytest.mark.parametrize(
    "argv",
    [
        ["relay", "--to", "slack://T/B/X"],
        ["relay", "--from", "redis://127.0.0.1:1/0", "--to", "slack://T/B/X"],
        ["relay", "--from", "redis-stream://127.0.0.1:1/0", "--claim-after", "soon"],
        ["relay", "status"],
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(argv: list[str], capsys: Any) -> None:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_the_password_never_shows_in_status_or_repr(redis_server_own_pw, capsys):
    server, password = redis_server_own_pw
    url = f"redis-stream://:{password}@127.0.0.1:{server.port}/0?stream={STREAM}"
    assert main(["relay", "status", "--from", url]) == 0
    relay = Relay(url, ["local://"])
    try:
        shown = capsys.readouterr().out + repr(relay)
    finally:
        relay.stop(2)
    assert password not in shown and "****" in shown


@pytest.fixture
def redis_server_own_pw() -> Iterator[tuple[servers.RedisServer, str]]:
    binary = servers.redis_server_binary()
    assert binary is not None
    password = "relayS3cretPassw0rd"
    server = servers.RedisServer(binary, password=password)
    server.start()
    yield server, password
    server.close()


def test_pagerduty_and_slack_one_storm_one_first_message_and_one_digest(redis_server, relays):
    """20 identical errors from two apps: PagerDuty (which deduplicates itself) gets every event,
    Slack one first message and one digest counting all 20; a PagerDuty 400 is dead-lettered."""
    url = stream_url(redis_server)
    for _ in range(2):  # two apps, the same error
        client = Client(backends=[url], sample_system=False, register_atexit=False)
        logger = logging.getLogger("app.payments")
        logger.propagate = False
        handler = AlertHandler(client=client)
        logger.addHandler(handler)
        for order in range(10):
            logger.error("card declined for order %s", order)
        logger.removeHandler(handler)
        assert client.flush(10)
        client.shutdown(2)
    with (
        PagerDutyStandIn(Reply(400, {"status": "invalid event", "errors": ["bad"]})) as pd,
        ScriptedServer([Reply(200, "ok")]) as slack,
    ):
        relay = Relay(
            url,
            [pd.url(), f"slack://hooks.slack.com/services/T0/B0/X0?endpoint={slack.url}"],
            storm_window=1.0,
            retry=FAST,
        )
        relays.append(relay)
        relay.start()
        assert wait_until(lambda: relay.stats()["acked"] == 20)
        assert wait_until(lambda: len(slack.requests) == 2)
        assert relay.stop(5)
    assert len(pd.bodies) == 20  # the first answered 400, the 19 others accepted
    [letter] = dead_letters(redis_server)
    assert letter["destination"] == "pagerduty" and "400" in letter["reason"]
    first, digest = (request.json() for request in slack.requests)
    assert "card declined" in json.dumps(first)
    assert "x 20" in json.dumps(digest)
    assert pending(redis_server) == 0
