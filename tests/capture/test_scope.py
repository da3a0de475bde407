"""Scopes: Escalite's per-request log without its bugs, isolation, context on captured events."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

import alertkit
from alertkit import AlertHandler, Client, Envelope, Rejected
from alertkit.backends.base import BaseBackend
from alertkit.capture import fold as _fold
from alertkit.capture.events import EventFactory
from alertkit.capture.request import Scope
from alertkit.capture.scope import (
    ESCALATION_EVENT_TYPE,
    add_service_log,
    add_to_log,
    current_scope,
    end_logging,
    escalate,
    get_all_logs,
    set_tag,
    set_user,
    start_logging,
    start_service_log,
    stop_service_log,
)
from alertkit.capture.submit import Submitter
from alertkit.delivery.pipeline import Capture, Results
from alertkit.model.event import AppEvent
from alertkit.model.outcomes import Outcome
from alertkit.testing import MemoryBackend, capture_events

FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)


class DownBackend(BaseBackend):
    """A destination that refuses everything, to show it does not stop the others."""

    scheme = "down"

    def __init__(self) -> None:
        super().__init__(name="down")
        self.calls = 0

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.calls += len(batch)
        return [Rejected("service says no")] * len(batch)


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(
        backends=[memory],
        sample_system=False,
        register_atexit=False,
        retry=FAST,
        tags={"service": "shop"},
    )
    yield made
    made.shutdown(2.0)


@pytest.fixture
def app_log(client: Client) -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.scope.app")
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)
    logger.propagate = True


def escalations(memory: MemoryBackend) -> list[Envelope]:
    return [e for e in memory.envelopes if e.event.event_type == ESCALATION_EVENT_TYPE]


def test_request_log_has_the_escalite_shape(client: Client) -> None:
    """alert_id (uuid4), three sections, level, times and date; entries carry Escalite's fields."""
    with client.scope() as scope:
        add_to_log(
            "cart", {"items": 2}, tag="api_logs", code=200, message="loaded", extras={"shard": 3}
        )
        add_service_log("inventory", "checked", url="https://inventory.invalid/v1")
        add_to_log("note", "top-level, as in Escalite")
        log = end_logging()
    assert uuid.UUID(log["alert_id"]).version == 4
    assert log["alert_id"] == scope.alert_id
    assert set(log) == {
        "alert_id",
        "api_logs",
        "service_logs",
        "error_logs",
        "log_level",
        "start_time",
        "end_time",
        "time_elapsed",
        "log_date",
        "note",
    }
    cart = log["api_logs"]["cart"]
    assert {k: cart[k] for k in ("value", "code", "message", "log_level", "extras")} == {
        "value": {"items": 2},
        "code": 200,
        "message": "loaded",
        "log_level": "info",
        "extras": {"shard": 3},
    }
    assert cart["log_time"] >= log["start_time"]
    assert log["service_logs"]["inventory"]["extras"] == {"url": "https://inventory.invalid/v1"}
    assert log["end_time"] >= log["start_time"] and log["time_elapsed"] >= 0
    assert log["log_level"] == "info"


def test_same_key_updates_the_entry_keeping_what_is_not_given(client: Client) -> None:
    """Escalite's update rule: None arguments keep the old values; extras merge."""
    with client.scope():
        add_to_log("order", 17, tag="api_logs", code=201, extras={"a": 1})
        add_to_log("order", None, tag="api_logs", message="paid", extras={"b": 2})
        entry = get_all_logs()["api_logs"]["order"]
    assert (entry["value"], entry["code"], entry["message"]) == (17, 201, "paid")
    assert entry["extras"] == {"a": 1, "b": 2}


def test_error_then_warning_still_escalates_at_error(client: Client, memory: MemoryBackend) -> None:
    """Escalite's bug, not copied: a later, lower level in another section does not lower the
    request's level, so escalate(from_level="error") still sends."""
    with client.scope():
        add_to_log("payments", None, tag="service_logs", message="card refused", level="error")
        add_to_log("render", None, tag="api_logs", message="slow template", level="warning")
        assert get_all_logs()["log_level"] == "error"
        future = escalate(from_level="error")
    assert future is not None
    assert future.result(5) == {"memory": alertkit.Delivered()}
    [sent] = escalations(memory)
    assert sent.event.log_level == "error"
    assert sent.request_log is not None
    assert sent.request_log["log_level"] == "error"
    assert sent.request_log["service_logs"]["payments"]["message"] == "card refused"
    assert sent.request_log["api_logs"]["render"]["log_level"] == "warning"
    assert "card refused" in sent.event.event_message
    assert sent.incident_key == sent.request_log["alert_id"]


def test_below_threshold_nothing_is_sent(client: Client, memory: MemoryBackend) -> None:
    """A request that only reached warning does not escalate at from_level="error"."""
    with client.scope():
        add_to_log("render", None, tag="api_logs", level="warning")
        assert escalate(from_level="error") is None
        assert escalate(from_level="fatal") is None
    assert client.flush(5)
    assert memory.envelopes == []


def test_escalate_sends_once_per_level(client: Client, memory: MemoryBackend) -> None:
    """A second escalate sends nothing unless the request's level rose since the first."""
    with client.scope():
        add_to_log("db", None, tag="service_logs", level="error")
        assert escalate() is not None
        assert escalate() is None
        add_to_log("db", None, tag="service_logs", level="fatal")
        assert escalate() is not None
    assert client.flush(5)
    assert [e.event.log_level for e in escalations(memory)] == ["error", "fatal"]


def test_every_backend_is_tried_when_one_fails(memory: MemoryBackend) -> None:
    """The escalation goes through the pipeline: a refusing notifier does not stop the others."""
    down = DownBackend()
    client = Client(backends=[down, memory], sample_system=False, register_atexit=False, retry=FAST)
    try:
        with client.scope():
            add_to_log("x", 1, tag="error_logs", level="error")
            future = escalate()
        assert future is not None
        results = future.result(5)
    finally:
        client.shutdown(2.0)
    assert results["down"] == Rejected("service says no")
    assert results["memory"] == alertkit.Delivered()
    assert down.calls == 1 and len(escalations(memory)) == 1


def test_logged_errors_enter_error_logs_and_escalate(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """An error logged in a scope is recorded with its traceback, so the escalation reports it."""
    with client.scope():
        app_log.warning("just a warning")
        try:
            {}["missing"]
        except KeyError:
            app_log.exception("lookup failed")
        app_log.error("second failure")
        log = get_all_logs()
        future = escalate()
    assert future is not None and future.result(5)
    errors = log["error_logs"]
    assert list(errors) == ["tests.scope.app", "tests.scope.app #2"]
    assert errors["tests.scope.app"]["value"] == "lookup failed"
    assert "KeyError: 'missing'" in errors["tests.scope.app"]["error_trace"]
    assert "error_trace" not in errors["tests.scope.app #2"]
    assert log["log_level"] == "error"
    [sent] = escalations(memory)
    assert sent.request_log is not None
    assert "KeyError" in sent.request_log["error_logs"]["tests.scope.app"]["error_trace"]
    assert sent.details["errors"][0] == "tests.scope.app: lookup failed"


def test_service_log_times_a_call_and_keeps_its_error_trace(client: Client) -> None:
    """start/stop_service_log record start, end, elapsed and the error trace; an error trace makes
    the call (and the request) an error."""
    with client.scope():
        start_service_log("payments", "charging", url="https://pay.invalid/charge")
        try:
            raise TimeoutError("payments did not answer")
        except TimeoutError as exc:
            stop_service_log("payments", "gave up", code=504, error_trace=exc)
        stop_service_log("cache", "never started", error_trace="plain text trace")
        log = get_all_logs()
    call = log["service_logs"]["payments"]
    assert call["url"] == "https://pay.invalid/charge"
    assert call["end_time"] >= call["start_time"] and call["time_elapsed"] >= 0
    assert (call["code"], call["message"], call["log_level"]) == (504, "gave up", "error")
    assert "TimeoutError: payments did not answer" in call["error_trace"]
    cache = log["service_logs"]["cache"]
    assert cache["start_time"] is None and cache["time_elapsed"] is None
    assert cache["error_trace"] == "plain text trace"
    assert log["log_level"] == "error"


def test_scopes_are_isolated_across_50_asyncio_tasks(client: Client, memory: MemoryBackend) -> None:
    """50 interleaved tasks each see only their own scope, tags, user and log."""

    async def request(n: int) -> str:
        with client.scope(tags={"request": str(n)}, user=f"user{n}") as scope:
            for step in range(3):
                add_to_log(f"step{step}", n, tag="api_logs")
                await asyncio.sleep(0)  # let the other tasks run in between
            assert current_scope() is scope
            add_to_log(f"failure{n}", n, tag="error_logs", level="error")
            await asyncio.sleep(0)
            log = get_all_logs()
            assert {e["value"] for e in log["api_logs"].values()} == {n}
            assert list(log["error_logs"]) == [f"failure{n}"]
            assert escalate() is not None
            return scope.alert_id

    async def main() -> list[str]:
        return await asyncio.gather(*(request(n) for n in range(50)))

    alert_ids = asyncio.run(main())
    assert current_scope() is None
    assert len(set(alert_ids)) == 50
    assert client.flush(5)
    sent = escalations(memory)
    assert len(sent) == 50
    for envelope in sent:
        assert envelope.request_log is not None
        n = envelope.tags["request"]
        assert envelope.event.event_user == f"user{n}"
        assert list(envelope.request_log["error_logs"]) == [f"failure{n}"]
        assert envelope.event.context_cross_app_correlation_id == envelope.request_log["alert_id"]
        assert alert_ids[int(n)] == envelope.request_log["alert_id"]


def test_scopes_are_isolated_across_threads(client: Client) -> None:
    """Threads that log at the same time each keep their own request log."""
    barrier = threading.Barrier(8)
    logs: dict[int, dict[str, object]] = {}

    def work(n: int) -> None:
        with client.scope(tags={"thread": str(n)}):
            add_to_log("before", n, tag="api_logs")
            barrier.wait(5)
            add_to_log("after", n, tag="api_logs")
            logs[n] = get_all_logs()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(logs) == list(range(8))
    for n, log in logs.items():
        assert {e["value"] for e in log["api_logs"].values()} == {n}  # type: ignore[union-attr]
    assert len({log["alert_id"] for log in logs.values()}) == 8


def test_a_scope_does_not_leak_into_a_new_thread(client: Client) -> None:
    """A thread started inside a scope does not see it (threads start with a fresh context)."""
    seen: list[object] = []
    with client.scope():
        thread = threading.Thread(target=lambda: seen.append(current_scope()))
        thread.start()
        thread.join(5)
    assert seen == [None]


def test_captured_events_carry_tags_user_and_correlation_id(memory: MemoryBackend) -> None:
    """Handler records, Client.log and send_event_async inside a scope carry its context; an
    explicit correlation id and user are kept."""
    with capture_events(tags={"service": "shop"}) as events:
        logger = logging.getLogger("tests.scope.default")
        handler = AlertHandler()  # the default client: capture_events' client
        logger.addHandler(handler)
        try:
            with events.client.scope(tags={"route": "checkout"}, user="jill") as scope:
                logger.error("handler event")
                events.client.log({"eventmessage": "log event"}, "warning")
                events.client.log(
                    {"eventmessage": "own ids", "corrid": "abc", "user": "bob"}, "info"
                )
                set_tag("step", "pay")
                set_user("jill@example.com")
                event = events.client.create_new_app_event("info", event_message="async event")
                events.client.send_event_async(event)
        finally:
            logger.removeHandler(handler)
        alert_id = scope.alert_id
        logger.error("outside any scope")
    by_message = {e.event_message: e for e in events}
    for message in ("handler event", "log event"):
        event = by_message[message]
        assert event.event_user == "jill"
        assert event.context_cross_app_correlation_id == alert_id
        assert sorted(event.context_tags) == ["route:checkout", "service:shop"]
    own = by_message["own ids"]
    assert (own.event_user, own.context_cross_app_correlation_id) == ("bob", "abc")
    later = by_message["async event"]
    assert later.event_user == "jill@example.com"
    assert sorted(later.context_tags) == ["route:checkout", "service:shop", "step:pay"]
    envelope = next(e for e in events.envelopes if e.event.event_message == "handler event")
    assert envelope.tags == {"service": "shop", "route": "checkout"}
    assert "outside any scope" not in by_message


def test_the_scope_is_read_on_the_caller_thread(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """An event logged just before the scope closes still carries the scope's context, although
    the policy thread builds it later."""
    with client.scope(user="ann") as scope:
        app_log.warning("last words")
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.event.event_user == "ann"
    assert envelope.event.context_cross_app_correlation_id == scope.alert_id


def test_tag_precedence_client_then_scope_then_record(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """Scope tags override the client's; a record's own extra tags override the scope's."""
    with client.scope(tags={"service": "checkout", "region": "eu"}):
        app_log.warning("tagged", extra={"tags": {"region": "us"}})
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.tags == {"service": "checkout", "region": "us"}
    assert sorted(envelope.event.context_tags) == ["region:us", "service:checkout"]


def test_errors_sent_in_a_scope_enter_error_logs(client: Client) -> None:
    """Client.log and send_event_async at error level are recorded too, below error they are not."""
    with client.scope():
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            client.log({"eventtype": "checkout", "eventmessage": "division"}, "error")
            event = client.create_new_app_event("fatal", exc_info=True)
        client.send_event_async(event)
        client.log({"eventmessage": "fine"}, "info")
        log = get_all_logs()
    assert list(log["error_logs"]) == ["checkout", "ZeroDivisionError"]
    assert "ZeroDivisionError" in log["error_logs"]["checkout"]["error_trace"]
    assert (
        "ZeroDivisionError: division by zero"
        in log["error_logs"]["ZeroDivisionError"]["error_trace"]
    )
    assert log["log_level"] == "fatal"


def test_exception_leaving_a_scope_with_escalate_from(
    client: Client, memory: MemoryBackend
) -> None:
    """with client.scope(escalate_from=...): the exception propagates, is recorded, and the one
    escalation carries its stack trace."""
    with pytest.raises(ValueError, match="bad input"), client.scope(escalate_from="error"):
        add_to_log("form", "x", tag="api_logs")
        raise ValueError("bad input")
    assert current_scope() is None
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.event_stacktrace[0].type == "ValueError"
    assert "ValueError: bad input" in (sent.exc_text or "")
    assert sent.request_log is not None
    assert "bad input" in sent.request_log["error_logs"]["ValueError"]["error_trace"]
    assert sent.request_log["end_time"] is not None


def test_nested_scope_inherits_tags_and_user_but_not_the_log(client: Client) -> None:
    """An inner scope adds to the outer tags, keeps the user, has its own log; leaving restores."""
    with client.scope(tags={"a": "1"}, user="jill") as outer:
        add_to_log("outer", 1, tag="api_logs")
        with client.scope(tags={"b": "2"}) as inner:
            assert inner.tags == {"a": "1", "b": "2"} and inner.user == "jill"
            assert get_all_logs()["api_logs"] == {}
        assert current_scope() is outer
        assert list(get_all_logs()["api_logs"]) == ["outer"]
    assert current_scope() is None


def test_outside_a_scope_the_functions_do_nothing(client: Client) -> None:
    """Library code may call them unconditionally: False / {} / None, nothing raised or sent."""
    assert add_to_log("k", 1, tag="api_logs") is False
    assert add_service_log("svc", "m") is False
    assert start_service_log("svc", "m") is False
    assert stop_service_log("svc") is False
    assert set_tag("k", "v") is False and set_user("u") is False
    assert get_all_logs() == {} and end_logging() == {}
    assert escalate() is None


def test_start_logging_opens_a_scope_of_the_default_client() -> None:
    """Escalite's entry point without a with-block; a second call starts a fresh log."""
    with capture_events() as events:

        def request() -> None:
            first = start_logging()
            add_to_log("k", 1, tag="error_logs", level="error")
            assert first.client is events.client
            second = start_logging()
            assert second is first and get_all_logs()["error_logs"] == {}
            add_to_log("k", 2, tag="error_logs", level="fatal")
            end_logging()
            assert escalate() is not None

        contextvars.copy_context().run(request)
    assert current_scope() is None
    [event] = events
    assert event.log_level == "fatal"


def test_bad_levels_and_reserved_keys_are_programming_errors(client: Client) -> None:
    """An unknown level or a key that would overwrite the log's own fields raises ValueError."""
    with client.scope():
        with pytest.raises(ValueError, match="unknown log level"):
            add_to_log("k", 1, tag="api_logs", level="loud")
        with pytest.raises(ValueError, match="reserved"):
            add_to_log("log_level", "debug")
        with pytest.raises(ValueError, match="section"):
            add_to_log("k", 1, tag="alert_id")
        with pytest.raises(ValueError, match="unknown log level"):
            escalate(from_level="panic")
    with pytest.raises(ValueError, match="unknown log level"):
        add_to_log("k", 1, level="loud")


def test_recorded_errors_are_bounded_per_request(client: Client, app_log: logging.Logger) -> None:
    """A loop that logs errors in one request does not grow its log without bound."""
    with client.scope():
        for n in range(80):
            app_log.error("failure %d", n)
        errors = get_all_logs()["error_logs"]
    assert len(errors) == 51
    assert errors["more errors"]["value"] == 30


def test_repeated_errors_get_numbered_keys_that_never_overwrite(
    client: Client, app_log: logging.Logger
) -> None:
    """The same logger failing again adds 'name #2', skipping a key the application took."""
    with client.scope():
        add_to_log("tests.scope.app #2", "mine", tag="error_logs", level="warning")
        app_log.error("first")
        app_log.error("second")
        errors = get_all_logs()["error_logs"]
    assert errors["tests.scope.app"]["value"] == "first"
    assert errors["tests.scope.app #2"]["value"] == "mine"
    assert errors["tests.scope.app #3"]["value"] == "second"


def test_incident_lifecycle_messages_are_not_scope_events(
    client: Client, memory: MemoryBackend
) -> None:
    """acknowledge/resolve sent inside a scope keep their own identity: no scope user, tags or
    correlation id, and nothing recorded in the request log."""
    with client.scope(tags={"route": "ops"}, user="jill"):
        client.resolve("disk-full-web001")
        log = get_all_logs()
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.kind == "resolve"
    assert envelope.event.event_user is None
    assert envelope.event.context_cross_app_correlation_id is None
    assert "route" not in envelope.tags
    assert log["error_logs"] == {} and log["log_level"] == "info"


# -- a scope that escalates when it ends holds its errors and folds them into the escalation ------


def test_error_in_an_escalating_scope_is_one_event_headed_by_it(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """with client.scope(escalate_from="error"): a logged error is not sent on its own; the one
    escalation carries its message, stack trace, extra fields and logger."""
    with client.scope(escalate_from="error") as scope:
        try:
            {}["sku-9"]
        except KeyError:
            app_log.exception("stock lookup failed", extra={"errors": "mine", "sku": "sku-9"})
        assert client.flush(5)
        assert memory.envelopes == []  # held until the scope ends
    assert client.flush(5)
    [sent] = memory.envelopes
    assert sent.event.event_type == ESCALATION_EVENT_TYPE
    assert sent.event.event_message == "Request escalated at ERROR: KeyError: stock lookup failed"
    assert sent.event.event_stacktrace[0].type == "KeyError"
    assert "KeyError: 'sku-9'" in (sent.exc_text or "")
    assert sent.logger_name == "tests.scope.app"
    assert sent.incident_key == scope.alert_id
    assert sent.details["sku"] == "sku-9"
    assert sent.details["extra.errors"] == "mine"  # the summary's own key is not overwritten
    assert sent.details["errors"] == ["tests.scope.app: stock lookup failed"]
    assert sent.tags == {"service": "shop"}


def test_a_held_event_future_gets_the_escalation_results(
    client: Client, memory: MemoryBackend
) -> None:
    """Client.log and send_event_async futures of folded errors settle with the results of the
    escalation that carried them; an event below error is sent at once."""
    with client.scope(escalate_from="error"):
        logged = client.log({"eventtype": "checkout", "eventmessage": "card declined"}, "error")
        sent_async = client.send_event_async(client.create_new_app_event("fatal", "issue", "db"))
        info = client.log({"eventmessage": "retrying"}, "warning")
        assert info.result(5) == {"memory": alertkit.Delivered()}
        assert not logged.done() and not sent_async.done()
    assert logged.result(5) == sent_async.result(5) == {"memory": alertkit.Delivered()}
    assert client.flush(5)
    warning, escalation = memory.envelopes
    assert warning.event.event_message == "retrying"
    assert escalation.event.log_level == "fatal"
    assert escalation.event.event_message == "Request escalated at FATAL: checkout: card declined"


def test_what_no_escalation_carried_is_sent_when_the_scope_ends(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """An escalation made inside the block carries the errors so far; a later error at the same
    level does not escalate again, so it is sent on its own when the scope ends."""
    with client.scope(escalate_from="error"):
        app_log.error("first failure")
        assert escalate() is not None
        app_log.error("second failure")
    assert client.flush(5)
    escalation, second = memory.envelopes
    assert escalation.event.event_message.endswith("tests.scope.app: first failure")
    assert second.event.event_type == "tests.scope.app"
    assert second.event.event_message == "second failure"
    assert second.event.context_cross_app_correlation_id == escalation.incident_key


def test_only_errors_of_the_scope_client_that_escalate_are_held(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """Another client's event goes to its own destinations at once; so do errors below
    escalate_from, and errors in a scope without escalate_from (escalate() is then explicit)."""
    other = MemoryBackend()
    elsewhere = Client(backends=[other], sample_system=False, register_atexit=False)
    with elsewhere, client.scope(escalate_from="error"):
        elsewhere.log({"eventmessage": "other client"}, "error")
        assert elsewhere.flush(5)
        assert [e.event.event_message for e in other.envelopes] == ["other client"]
    assert client.flush(5)
    [escalation] = memory.envelopes  # the error is in the request log all the same
    assert escalation.event.event_message == "Request escalated at ERROR: log: other client"
    memory.envelopes.clear()
    with client.scope(escalate_from="fatal"):
        app_log.error("below fatal")
        assert client.flush(5)
        assert [e.event.event_message for e in memory.envelopes] == ["below fatal"]
    with client.scope():
        app_log.error("plain scope")
        assert client.flush(5)
        assert memory.envelopes[-1].event.event_message == "plain scope"
        assert escalate() is not None
    assert client.flush(5)
    assert [e.event.event_type for e in memory.envelopes] == [
        "tests.scope.app",
        "tests.scope.app",
        ESCALATION_EVENT_TYPE,
    ]


def test_held_errors_are_bounded_per_request(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """A loop of errors holds at most 50 for the escalation; the rest go out on their own."""
    with client.scope(escalate_from="error"):
        for n in range(60):
            app_log.error("failure %d", n)
    assert client.flush(5)
    [escalation] = escalations(memory)
    assert escalation.event.event_message.endswith("failure 0")
    assert len(memory.envelopes) == 11
    assert memory.envelopes[0].event.event_message == "failure 50"


def test_a_fresh_request_log_sends_the_held_errors(
    client: Client, memory: MemoryBackend, app_log: logging.Logger
) -> None:
    """start_logging() starts a new log: errors held for the old one are sent as they are."""
    with client.scope(escalate_from="fatal") as scope:
        app_log.critical("old request")
        old_id = scope.alert_id
        start_logging()
        assert client.flush(5)
        [sent] = memory.envelopes
        assert sent.event.event_message == "old request"
        assert sent.event.context_cross_app_correlation_id == old_id


class SignallingBackend(MemoryBackend):
    """A memory backend that says when something arrived, so a test waits on an event."""

    def __init__(self) -> None:
        super().__init__(name="memory")
        self.arrived = threading.Event()

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        outcomes = super().send(batch)
        self.arrived.set()
        return outcomes


def test_a_held_error_escalates_after_max_hold_even_if_the_request_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request that runs on (a stream, a hung call) does not keep its error from paging: after
    MAX_HOLD the scope escalates with its log so far, once."""
    monkeypatch.setattr(_fold, "MAX_HOLD", 0.05)
    backend = SignallingBackend()
    client = Client(backends=[backend], sample_system=False, register_atexit=False, retry=FAST)
    logger = logging.getLogger("tests.scope.stream")
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        with client, client.scope(escalate_from="error"):
            logger.error("upstream gone")
            assert backend.arrived.wait(5)  # while the request still runs
            [sent] = backend.envelopes
            assert sent.event.event_message == (
                "Request escalated at ERROR: tests.scope.stream: upstream gone"
            )
            assert sent.request_log is not None and sent.request_log["end_time"] is None
    finally:
        logger.removeHandler(handler)
    assert len(backend.envelopes) == 1  # leaving the scope does not escalate a second time


def test_send_event_is_not_held_so_waiting_on_it_does_not_wait_for_the_scope(
    client: Client, memory: MemoryBackend
) -> None:
    """The synchronous send_event delivers at once inside an escalating scope (holding it would
    make it wait until the request ends); the escalation follows at the end."""
    with client.scope(escalate_from="error"):
        event = client.create_new_app_event("error", "issue", "sync", "sent and waited for")
        assert client.send_event(event, timeout=5) == {"memory": alertkit.Delivered()}
    assert client.flush(5)
    assert [e.event.event_type for e in memory.envelopes] == ["sync", ESCALATION_EVENT_TYPE]


class SubmitOnly:
    """Offers a real client's submit interface and nothing else (no pipeline, no ``_submit``)."""

    def __init__(self, inner: Client) -> None:
        self._inner = inner
        self.enqueued = 0

    @property
    def events(self) -> EventFactory:
        return self._inner.events

    def create_new_app_event(self, *args: Any, **kwargs: Any) -> AppEvent:
        return self._inner.create_new_app_event(*args, **kwargs)

    def envelope_for(self, event: AppEvent, **fields: Any) -> Envelope:
        return self._inner.envelope_for(event, **fields)

    def submit_capture(self, capture: Capture) -> bool:
        return self._inner.submit_capture(capture)

    def enqueue(self, capture: Capture, future: Future[Results] | None = None) -> bool:
        self.enqueued += 1
        return self._inner.enqueue(capture, future)


def test_a_scope_needs_only_the_submit_interface(client: Client, memory: MemoryBackend) -> None:
    """Scopes reach their client only through ``capture.submit.Submitter``: a scope made on an
    object that offers just that interface escalates through ``enqueue`` to the real backends."""
    only = SubmitOnly(client)
    submitter: Submitter = only
    with Scope(submitter, escalate_from="error") as scope:
        add_to_log("db", None, tag="service_logs", level="error")
        assert current_scope() is scope
    assert client.flush(5)
    assert only.enqueued == 1
    [sent] = escalations(memory)
    assert sent.event.log_level == "error"
    assert [e.event.event_type for e in memory.envelopes] == [ESCALATION_EVENT_TYPE]
