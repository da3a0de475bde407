"""SentryBackend: the envelope read by sentry-sdk's own parser, DSN forms, rate limits, replays."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from alertkit import AlertHandler, Client, Delivered, Rejected, RetryLater, RetryPolicy, Spooled
from alertkit.backends.base import Backend, ClientContext
from alertkit.backends.http import HttpBackend
from alertkit.backends.registry import create_backend
from alertkit.backends.sentry import SentryBackend, parse_rate_limits
from alertkit.model.errors import ConfigError
from alertkit.spool.store import Spool
from alertkit.testing.contract import HttpBackendContract
from tests.backends._notifiers import FAST_RETRY
from tests.standins.http import Reply
from tests.standins.sentry import PUBLIC_KEY, SentryStandIn

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


class CardDeclined(Exception):
    """An application exception, raised from a frame of this module."""


def _charge(order: int) -> None:
    try:
        int("not a number")
    except ValueError as exc:
        raise CardDeclined(f"card refused for order {order}") from exc


@pytest.fixture
def sentry() -> Iterator[SentryStandIn]:
    with SentryStandIn() as stand_in:
        yield stand_in
    assert stand_in.invalid == [], stand_in.invalid


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.shutdown(2.0)


def make_client(clients: list[Client], backend: Any, **options: Any) -> Client:
    options.setdefault("retry", FAST_RETRY)
    client = Client(
        backends=[backend],
        sample_system=False,
        register_atexit=False,
        app_version="2.4.1",
        deployment_stage="production",
        **options,
    )
    clients.append(client)
    return client


def bound(dsn: str, **options: Any) -> SentryBackend:
    backend = SentryBackend(dsn, timeout=2, **options)
    backend.bind(ClientContext(timeout=2, hostname="web01", app_version="9.9"))
    return backend


# -- the event -------------------------------------------------------------------------------------


def test_a_logged_exception_arrives_with_every_field(sentry, clients) -> None:
    client = make_client(clients, sentry.dsn)
    logger = logging.getLogger("shop.checkout")
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        with client.scope(tags={"route": "/pay"}, user="jill@example.com"):
            try:
                _charge(1042)
            except CardDeclined:
                logger.error("charge of order %s failed", 1042, exc_info=True)
        assert client.flush(10)
    finally:
        logger.removeHandler(handler)
    [event] = sentry.events
    assert event["level"] == "error" and event["logger"] == "shop.checkout"
    assert event["logentry"] == {
        "message": "charge of order %s failed",
        "formatted": "charge of order 1042 failed",
    }
    cause, raised = event["exception"]["values"]  # the cause first, as Sentry orders them
    assert (raised["type"], raised["module"]) == ("CardDeclined", __name__)
    assert raised["value"] == "card refused for order 1042"
    assert cause["type"] == "ValueError" and "module" not in cause
    frame = raised["stacktrace"]["frames"][-1]
    assert frame["function"] == "_charge" and frame["module"] == __name__
    assert frame["filename"] == "tests/backends/test_sentry.py"
    assert frame["abs_path"] == __file__ and isinstance(frame["lineno"], int)
    assert frame["in_app"] is True
    assert event["tags"]["route"] == "/pay"
    assert event["user"] == {"id": "jill@example.com", "email": "jill@example.com"}
    assert (event["release"], event["environment"]) == ("2.4.1", "production")
    assert event["server_name"]
    assert event["contexts"]["runtime"]["name"] and event["contexts"]["os"]["name"]
    assert event["platform"] == "python" and event["sdk"]["name"] == "alertkit.python"
    assert sentry.auth[0]["sentry_key"] == PUBLIC_KEY
    assert sentry.auth[0]["sentry_client"].startswith("alertkit")


def test_breadcrumbs_trace_ids_and_fingerprint_take_sentrys_shapes(sentry, clients) -> None:
    client = make_client(clients, sentry.dsn)
    crumbs = [
        {"timestamp": 1700000000.5, "level": "critical", "category": "db", "message": "slow"},
        {"timestamp": 1700000001.0, "level": "info", "message": "retrying", "data": {"n": 2}},
    ]
    event = client.create_new_app_event("warning", event_type="disk", event_message="91%")
    envelope = client.envelope_for(
        event,
        breadcrumbs=crumbs,
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        fingerprint=["disk", "web01"],
    )
    results = client.send_event(envelope, timeout=10)
    assert isinstance(results["sentry"], Delivered), results
    [sent] = sentry.events
    assert sent["event_id"] == envelope.event_id
    assert sentry.envelopes[0].headers["event_id"] == envelope.event_id
    assert sent["level"] == "warning" and "exception" not in sent
    assert sent["breadcrumbs"]["values"] == [
        {
            "type": "default",
            "timestamp": 1700000000.5,
            "category": "db",
            "message": "slow",
            "level": "fatal",
        },
        {
            "type": "default",
            "timestamp": 1700000001.0,
            "message": "retrying",
            "level": "info",
            "data": {"n": 2},
        },
    ]
    assert sent["contexts"]["trace"] == {"trace_id": TRACE_ID, "span_id": SPAN_ID, "type": "trace"}
    assert sent["fingerprint"] == ["disk", "web01"]


def test_library_frames_are_not_in_app() -> None:
    from alertkit.backends.sentry import frame_of

    frame = frame_of(logging.__file__, "error", 10)
    assert frame["in_app"] is False and frame["module"] == "logging"
    site = pytest.__file__
    assert frame_of(site, "main", 1)["in_app"] is False


# -- DSNs and URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://abc123@o1.ingest.sentry.io/42", "https://o1.ingest.sentry.io/api/42/envelope/"),
        ("sentry://abc123@sentry.example.com/7", "https://sentry.example.com/api/7/envelope/"),
        (
            "sentry+https://abc123@glitchtip.example/sub/3",
            "https://glitchtip.example/sub/api/3/envelope/",
        ),
        ("sentry+http://abc123@10.0.0.5:9000/1", "http://10.0.0.5:9000/api/1/envelope/"),
    ],
)
def test_every_url_form_reaches_the_projects_envelope_endpoint(url: str, endpoint: str) -> None:
    backend = create_backend(url)
    assert isinstance(backend, SentryBackend) and backend.url == endpoint
    assert "abc123" not in repr(backend)


@pytest.mark.parametrize(
    "url",
    [
        "https://events.example/api/v1/events?api_key=k",
        "https://events.example/v1/42?api_key=k",
        "https://user@events.example/v1/events?api_key=k",
    ],
)
def test_event_api_urls_keep_meaning_the_http_backend(url: str) -> None:
    assert isinstance(create_backend(url), HttpBackend)


@pytest.mark.parametrize(
    ("dsn", "option"),
    [
        ("https://o1.ingest.sentry.io/42", "dsn"),
        ("https://abc@o1.ingest.sentry.io/", "project id"),
        ("ftp://abc@o1.ingest.sentry.io/42", "dsn"),
    ],
)
def test_a_malformed_dsn_is_a_construction_error(dsn: str, option: str) -> None:
    with pytest.raises(ConfigError, match=option) as caught:
        SentryBackend(dsn)
    assert "abc" not in str(caught.value)


def test_an_old_dsn_with_a_secret_sends_it_and_masks_it(sentry) -> None:
    backend = bound(sentry.dsn.replace(f"{PUBLIC_KEY}@", f"{PUBLIC_KEY}:oldSecret99@"))
    try:
        assert isinstance(backend.send([envelope_of(backend)])[0], Delivered)
    finally:
        backend.close()
    assert sentry.auth[0]["sentry_secret"] == "oldSecret99"
    assert "oldSecret99" not in repr(backend) and PUBLIC_KEY not in repr(backend)


def envelope_of(backend: SentryBackend) -> Any:
    from alertkit.model.event import AppEvent, Envelope

    event = AppEvent(api_key="", classification="issue", event_type="t", event_message="m")
    return Envelope(event=event)


def test_backend_options_override_the_clients_release_and_environment(sentry) -> None:
    backend = create_backend(sentry.url(environment="staging", release="abc"))
    backend.bind(ClientContext(timeout=2, app_version="9.9", deployment_stage="production"))
    try:
        backend.send([envelope_of(backend)])  # type: ignore[arg-type]
    finally:
        backend.close()
    assert (sentry.events[0]["environment"], sentry.events[0]["release"]) == ("staging", "abc")


# -- rate limits -----------------------------------------------------------------------------------


def test_rate_limit_header_parses_like_sentry_sdk() -> None:
    limits = parse_rate_limits("60:error;transaction:key, 2700:default:organization, junk, 5::org")
    assert limits == {"error": 60.0, "transaction": 60.0, "default": 2700.0, None: 5.0}


def test_a_rate_limit_header_holds_the_events_back_without_requests(sentry) -> None:
    sentry.replies.append(Reply(200, {"id": "x"}, {"X-Sentry-Rate-Limits": "30:error:key"}))
    backend = bound(sentry.dsn)
    try:
        outcomes = backend.send([envelope_of(backend) for _ in range(3)])
        later = backend.send([envelope_of(backend)])
    finally:
        backend.close()
    assert isinstance(outcomes[0], Delivered)
    for held in [*outcomes[1:], *later]:
        assert isinstance(held, RetryLater) and 28 <= (held.delay or 0) <= 30, held
    assert len(sentry.server.requests) == 1, "nothing is sent while the category is paused"


def test_a_limit_on_another_category_does_not_hold_events(sentry) -> None:
    sentry.replies.append(Reply(200, {"id": "x"}, {"X-Sentry-Rate-Limits": "30:transaction:key"}))
    backend = bound(sentry.dsn)
    try:
        outcomes = backend.send([envelope_of(backend) for _ in range(2)])
    finally:
        backend.close()
    assert all(isinstance(o, Delivered) for o in outcomes), outcomes


def test_429_without_retry_after_pauses_sixty_seconds_like_sentry_sdk(sentry) -> None:
    sentry.replies.append(Reply(429, {"detail": "slow down"}))
    backend = bound(sentry.dsn)
    try:
        [outcome] = backend.send([envelope_of(backend)])
        [held] = backend.send([envelope_of(backend)])
    finally:
        backend.close()
    assert isinstance(outcome, RetryLater) and outcome.delay == 60.0 and "429" in outcome.reason
    assert isinstance(held, RetryLater) and 58 <= (held.delay or 0) <= 60


def test_a_rate_limit_on_a_429_sets_the_delay_of_the_retry(sentry) -> None:
    limited = Reply(429, {"detail": "limited"}, {"X-Sentry-Rate-Limits": "120::organization"})
    sentry.replies.append(limited)
    backend = bound(sentry.dsn)
    try:
        [outcome] = backend.send([envelope_of(backend)])
    finally:
        backend.close()
    assert isinstance(outcome, RetryLater) and outcome.delay == 120.0, outcome


def test_413_is_rejected_for_good(sentry) -> None:
    sentry.replies.append(Reply(413, {"detail": "envelope exceeded size limits"}))
    backend = bound(sentry.dsn)
    try:
        [outcome] = backend.send([envelope_of(backend)])
    finally:
        backend.close()
    assert isinstance(outcome, Rejected) and "413" in outcome.reason and "size" in outcome.reason


# -- replays ---------------------------------------------------------------------------------------


def test_a_retry_after_a_lost_answer_is_one_event_in_sentry(sentry, clients) -> None:
    """Sentry stored the event but the answer was lost; the retry carries the same event_id."""
    sentry.replies.append(Reply(200, reset_mid_response=True))
    client = make_client(clients, sentry.dsn)
    event = client.create_new_app_event("error", event_message="once")
    envelope = client.envelope_for(event)
    results = client.send_event(envelope, timeout=10)
    assert isinstance(results["sentry"], Delivered), results
    assert len(sentry.envelopes) == 2 and sentry.duplicates == 1
    assert [e["event_id"] for e in sentry.events] == [envelope.event_id]


def test_a_spool_replay_carries_the_spooled_event_ids(sentry, clients, tmp_path) -> None:
    sentry.replies.extend([Reply(503)] * 1000)
    policy = RetryPolicy(
        backoff=0.01,
        max_backoff=0.05,
        max_attempts=100,
        deadline=60,
        circuit_threshold=2,
        circuit_cooldown=0.3,
        circuit_max_cooldown=0.5,
    )
    spool_path = tmp_path / "spool.db"
    client = make_client(
        clients, sentry.dsn, spool_path=spool_path, retry=policy, batch_size=1, threads=1
    )
    futures = [
        client.send_event_async(client.create_new_app_event(event_message=f"e{i}"))
        for i in range(6)
    ]
    assert client.flush(10)
    assert any(isinstance(f.result()["sentry"], Spooled) for f in futures)
    spooled = {row["event_id"] for row in Spool(spool_path).list("sentry", limit=100)}
    assert spooled and sentry.events == []
    sentry.replies.clear()  # Sentry is back
    deadline = time.monotonic() + 15
    while Spool(spool_path).counts().get("sentry", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Spool(spool_path).counts().get("sentry", 0) == 0, "every spooled event was replayed"
    assert spooled <= {e["event_id"] for e in sentry.events}, "replays keep the event ids"


# -- the backend contract --------------------------------------------------------------------------


class TestSentryContract(HttpBackendContract):
    secrets = (PUBLIC_KEY,)

    def make(self, endpoint: str, timeout: float) -> Backend:
        host = endpoint.partition("://")[2]
        return SentryBackend(f"http://{PUBLIC_KEY}@{host}/42", timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        host = endpoint.partition("://")[2]
        return f"sentry+http://{PUBLIC_KEY}@{host}/42?timeout={timeout}"

    def bad_configs(self) -> Iterable[tuple[Callable[[], object], str]]:
        yield (lambda: SentryBackend(f"https://{PUBLIC_KEY}@sentry.example/"), "project id")
        yield (lambda: SentryBackend(f"ftp://{PUBLIC_KEY}@sentry.example/1"), "dsn")
        yield (lambda: SentryBackend(f"https://{PUBLIC_KEY}@s.example/1", timeout=0), "timeout")
