"""Silences against a real redis-server: added by one relay (or the CLI), honoured by another,
counted and kept in the capped ``silenced`` stream; matchers and durations parsed like
Alertmanager's; Redis down means nothing is silenced."""

from __future__ import annotations

import time

import msgspec
import pytest

from alertkit.relay.keys import state_key
from alertkit.relay.silences import Silences, parse_duration, parse_matchers
from tests.relay._events import envelope
from tests.standins.redis import RedisServer, quick_client

STREAM = "alertkit:events"


def test_a_silence_added_on_one_relay_mutes_matching_events_on_another(
    redis_server: RedisServer,
) -> None:
    operator = Silences(redis_server.client(), STREAM)
    relay = Silences(redis_server.client(), STREAM, refresh=0.05)
    assert relay.match(envelope()) is None
    silence = operator.add(
        "logger=payments type=PaymentDeclined", 7200, "card processor down", "ops@example.com"
    )
    time.sleep(0.06)
    assert relay.match(envelope()) == silence
    assert relay.match(envelope(logger="checkout")) is None, "every matcher must hold"
    assert relay.match(envelope(event_type="shop.errors.Timeout")) is None
    assert [s.id for s in operator.list()] == [silence.id]
    assert 7190 < silence.ends - silence.starts <= 7200


def test_silenced_events_are_counted_and_kept_in_the_capped_stream(
    redis_server: RedisServer,
) -> None:
    silences = Silences(redis_server.client(), STREAM, maxlen=10)
    silence = silences.add("logger=payments", 60, "noise")
    for i in range(30):
        event = envelope(f"declined {i}")
        silences.record(silence, event, f"1700000000000-{i}")
    assert silences.counts() == {silence.id: 30}
    with redis_server.client() as conn:
        kept = conn.xrange(state_key(STREAM, "silenced"))
        assert 10 <= len(kept) < 30, "capped (approximately, MAXLEN ~)"
    _, fields = kept[-1]
    assert fields[b"silence"].decode() == silence.id
    assert fields[b"entry"] == b"1700000000000-29"
    assert msgspec.json.decode(fields[b"envelope"])["event"]["eventMessage"] == "declined 29"
    assert silences.stats()["silenced"] == 30


def test_expire_ends_a_silence_at_once_and_keeps_it_listed(redis_server: RedisServer) -> None:
    silences = Silences(redis_server.client(), STREAM, refresh=0.01)
    silence = silences.add("type=PaymentDeclined", 3600)
    assert silences.match(envelope()) is not None
    ended = silences.expire(silence.id)
    assert ended.ends <= time.time()
    assert silences.match(envelope()) is None
    assert silences.list() == []
    assert [s.id for s in silences.list(expired=True)] == [silence.id]
    with pytest.raises(KeyError):
        silences.expire("no-such-id")


def test_a_silence_ends_by_itself(redis_server: RedisServer) -> None:
    silences = Silences(redis_server.client(), STREAM, refresh=0.01)
    silences.add("logger=payments", 0.2)
    assert silences.match(envelope()) is not None
    time.sleep(0.25)
    assert silences.match(envelope()) is None


@pytest.mark.parametrize(
    ("matchers", "silenced"),
    [
        ("logger=payments", True),
        ("logger!=payments", False),
        ("type=shop.errors.PaymentDeclined", True),
        ("type=~Payment.*", True),
        ("type!~Payment.*", False),
        ('message=~".*order 7"', True),
        ("level=error stage=production host=web-1", True),
        ("level=warning", False),
        ("level=ERROR", True),
        ("level!=critical", True),
        ("tag.region=eu", True),
        ("tag.region=us", False),
        ("key=", True),
    ],
)
def test_matchers_follow_alertmanager(
    redis_server: RedisServer, matchers: str, silenced: bool
) -> None:
    silences = Silences(redis_server.client(), STREAM)
    silences.add(matchers, 60)
    assert (silences.match(envelope(tags={"region": "eu"})) is not None) is silenced


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "at least one"),
        ("logger", "not name=value"),
        ("colour=red", "unknown field 'colour'"),
        ("level=loud", "level is one of"),
        ("type=~(unclosed", "bad regex"),
        ('logger="payments', "matchers:"),
    ],
)
def test_bad_matchers_are_refused_naming_the_mistake(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        parse_matchers(text)


def test_matchers_read_quotes_and_commas() -> None:
    parsed = parse_matchers('logger=payments, message="card declined"')
    assert [str(m) for m in parsed] == ["logger=payments", 'message="card declined"']


@pytest.mark.parametrize(
    ("text", "seconds"), [("2h", 7200), ("30m", 1800), ("1d", 86400), ("1h30m", 5400), ("90s", 90)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-1h", "0m", "2h 3"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_redis_down_silences_nothing_new_and_keeps_the_last_copy(
    redis_server_own: RedisServer,
) -> None:
    silences = Silences(quick_client(redis_server_own.port), STREAM, refresh=0.01)
    silences.add("logger=payments", 60)
    assert silences.match(envelope()) is not None
    redis_server_own.stop()
    time.sleep(0.02)
    assert silences.match(envelope()) is not None, "the copy read before the outage holds"
    assert silences.stats()["failed_open"] >= 1
    fresh = Silences(quick_client(redis_server_own.port), STREAM)
    assert fresh.match(envelope()) is None, "with no copy, nothing is silenced"
