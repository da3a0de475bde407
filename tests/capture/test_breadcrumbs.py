"""Breadcrumbs: the last log records of the current context ride along with error events."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import alertkit
from alertkit import AlertHandler, Client
from alertkit.capture import breadcrumbs, submit
from alertkit.policy.limits import Limits
from alertkit.testing import MemoryBackend


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def make_client(memory: MemoryBackend) -> Iterator[Any]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(backends=[memory], sample_system=False, register_atexit=False, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(2)


@pytest.fixture
def make_logger() -> Iterator[Any]:
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def make(client: Client, name: str = "tests.crumbs.app", **handler: Any) -> logging.Logger:
        log = logging.getLogger(name)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        alert = AlertHandler(client=client, **handler)
        log.addHandler(alert)
        attached.append((log, alert))
        return log

    yield make
    for log, handler in attached:
        log.removeHandler(handler)


def crumbs_of(memory: MemoryBackend, index: int = -1) -> list[dict[str, Any]]:
    return list(memory.envelopes[index].breadcrumbs)


def test_log_records_before_an_error_ride_along_oldest_first(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    log.debug("not kept: below INFO")
    log.info("loaded cart %s", 42, extra={"cart_id": 42, "tags": {"steering": "not data"}})
    log.warning("payment slow")
    log.error("payment failed")
    assert client.flush(5)
    crumbs = crumbs_of(memory)
    assert [c["message"] for c in crumbs] == ["loaded cart 42", "payment slow"]
    first = crumbs[0]
    assert first["level"] == "info" and first["category"] == "tests.crumbs.app"
    assert first["data"] == {"cart_id": 42}
    assert datetime.fromisoformat(first["timestamp"]).utcoffset().total_seconds() == 0
    assert crumbs_of(memory, 0) == [], "a warning event carries no breadcrumbs"


def test_records_below_the_handler_level_become_breadcrumbs_only(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)  # the handler's default level: WARNING
    handler = next(h for h in log.handlers if isinstance(h, AlertHandler))
    assert handler.level == logging.WARNING and handler.event_level == logging.WARNING
    log.info("step one")
    log.error("boom")
    assert client.flush(5)
    assert [e.event.event_message for e in memory.envelopes] == ["boom"]
    assert [c["message"] for c in crumbs_of(memory)] == ["step one"]


def test_an_error_is_a_breadcrumb_of_the_next_error(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    log.error("first")
    log.error("second")
    assert client.flush(5)
    assert [c["message"] for c in crumbs_of(memory)] == ["first"]
    assert crumbs_of(memory)[0]["level"] == "error"


def test_max_breadcrumbs_keeps_the_newest(make_client, make_logger, memory):
    client = make_client(max_breadcrumbs=3)
    log = make_logger(client, level=logging.ERROR)
    for i in range(10):
        log.info("step %d", i)
    log.error("boom")
    assert client.flush(5)
    assert [c["message"] for c in crumbs_of(memory)] == ["step 7", "step 8", "step 9"]


def test_zero_turns_breadcrumbs_off(make_client, make_logger, memory):
    client = make_client(max_breadcrumbs=0)
    log = make_logger(client)
    handler = next(h for h in log.handlers if isinstance(h, AlertHandler))
    assert type(handler.level) is int, "no breadcrumbs: the handler's level is a plain number"
    log.info("step")
    alertkit.add_breadcrumb("mine")
    log.error("boom")
    assert client.flush(5)
    assert crumbs_of(memory) == []


def test_breadcrumb_level_is_configurable(make_client, make_logger, memory):
    client = make_client(breadcrumb_level="warning")
    log = make_logger(client)
    log.info("not kept")
    log.warning("kept")
    log.error("boom")
    assert client.flush(5)
    assert [c["message"] for c in crumbs_of(memory)] == ["kept"]


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("max_breadcrumbs", -1, ValueError),
        ("max_breadcrumbs", "50", TypeError),
        ("max_breadcrumbs", True, TypeError),
        ("breadcrumb_level", "loud", ValueError),
        ("before_breadcrumb", "not callable", TypeError),
    ],
)
def test_bad_options_raise_at_construction_naming_the_option(option, value, error) -> None:
    with pytest.raises(error, match=option):
        Client(backends=[MemoryBackend()], register_atexit=False, **{option: value})


def test_add_breadcrumb_with_category_level_and_data(make_client, memory):
    client = make_client()
    alertkit.add_breadcrumb("user clicked pay", category="ui", level="warning", data={"x": 1})
    alertkit.add_breadcrumb("plain")
    client.send_event(client.create_new_app_event("error", event_message="boom"), timeout=5)
    crumbs = crumbs_of(memory)
    assert crumbs[0]["message"] == "user clicked pay" and crumbs[0]["category"] == "ui"
    assert crumbs[0]["level"] == "warning" and crumbs[0]["data"] == {"x": 1}
    assert crumbs[1] | {"timestamp": None} == {
        "timestamp": None,
        "level": "info",
        "category": None,
        "message": "plain",
        "data": {},
    }
    with pytest.raises(ValueError, match="unknown log level"):
        alertkit.add_breadcrumb("bad", level="loud")


def test_every_error_capture_path_takes_the_trail_and_others_do_not(make_client, memory):
    client = make_client()
    alertkit.add_breadcrumb("before")
    client.log({"eventmessage": "log call"}, "error", exc_info=False)
    client.log({"eventmessage": "warning call"}, "warning", exc_info=False)
    client.send_event_async(client.create_new_app_event("fatal", event_message="fatal"))
    assert client.flush(5)
    by_message = {e.event.event_message: list(e.breadcrumbs) for e in memory.envelopes}
    assert [c["message"] for c in by_message["log call"]] == ["before"]
    assert [c["message"] for c in by_message["fatal"]] == ["before"]
    assert by_message["warning call"] == []


def test_before_breadcrumb_edits_and_drops(make_client, make_logger, memory):
    seen: list[dict[str, Any]] = []

    def before(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(hint)
        if "health" in crumb["message"]:
            return None
        crumb["message"] = crumb["message"].upper()
        return crumb

    client = make_client(before_breadcrumb=before)
    log = make_logger(client)
    log.info("GET /health")
    log.info("order %s", 7)
    log.error("boom")
    log.error("again")
    assert client.flush(5)
    assert [c["message"] for c in crumbs_of(memory, 0)] == ["ORDER 7"]
    assert [c["message"] for c in crumbs_of(memory, 1)] == ["ORDER 7", "BOOM"]
    assert {"template": "order %s", "args": (7,)} in seen
    assert len(seen) == 3, "each crumb is given to the hook once, not once per event"


def test_a_failing_before_breadcrumb_keeps_the_crumb(make_client, make_logger, memory, caplog):
    def before(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("user bug")

    client = make_client(before_breadcrumb=before)
    log = make_logger(client)
    log.info("step")
    log.error("boom")
    assert client.flush(5)
    assert [c["message"] for c in crumbs_of(memory)] == ["step"]
    assert any("before_breadcrumb raised RuntimeError" in r.getMessage() for r in caplog.records)


def test_breadcrumbs_are_scrubbed_and_bounded(make_client, make_logger, memory):
    client = make_client(limits=Limits(max_string=100))
    log = make_logger(client)
    log.info("login with password=hunter2", extra={"api_token": "abc", "blob": "x" * 5000})
    alertkit.add_breadcrumb("wide", data={f"k{i}": i for i in range(100)})
    log.error("boom")
    assert client.flush(5)
    login, wide = crumbs_of(memory)
    assert "hunter2" not in login["message"]
    assert login["data"]["api_token"] != "abc"
    assert len(login["data"]["blob"]) < 200 and "cut" in login["data"]["blob"]
    assert len(wide["data"]) == breadcrumbs.MAX_DATA_KEYS


def test_message_arguments_that_fail_to_format_never_raise(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client, "tests.crumbs.bad_args")
    log.handlers = [h for h in log.handlers if isinstance(h, AlertHandler)]  # only ours
    log.info("%d items", "not a number")
    log.error("boom")
    assert client.flush(5)
    [crumb] = crumbs_of(memory)
    assert crumb["message"].startswith("%d items") and "not a number" in crumb["message"]


def test_a_scope_has_its_own_trail(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    log.info("outside before")
    with client.scope():
        log.info("inside")
        log.error("in the request")
    log.error("after the request")
    assert client.flush(5)
    by_message = {e.event.event_message: list(e.breadcrumbs) for e in memory.envelopes}
    assert [c["message"] for c in by_message["in the request"]] == ["inside"]
    assert [c["message"] for c in by_message["after the request"]] == ["outside before"]


def test_threads_without_a_context_share_the_process_trail(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    worker = threading.Thread(target=lambda: log.info("from a worker thread"))
    worker.start()
    worker.join(5)
    log.error("boom")
    assert client.flush(5)
    assert [c["message"] for c in crumbs_of(memory)] == ["from a worker thread"]


def test_each_asyncio_task_has_its_own_trail(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    log.info("before the loop")

    async def job(name: str) -> None:
        log.info("%s step 1", name)
        await asyncio.sleep(0.01)
        log.info("%s step 2", name)
        await asyncio.sleep(0.01)
        log.error("%s failed", name)

    async def main() -> None:
        await asyncio.gather(job("a"), job("b"))

    asyncio.run(main())
    assert client.flush(5)
    by_message = {e.event.event_message: list(e.breadcrumbs) for e in memory.envelopes}
    for name in ("a", "b"):
        assert [c["message"] for c in by_message[f"{name} failed"]] == [
            "before the loop",
            f"{name} step 1",
            f"{name} step 2",
        ]


def test_the_trail_is_bounded_whatever_is_logged(make_client, make_logger):
    client = make_client(max_breadcrumbs=10)
    log = make_logger(client, level=logging.ERROR)
    for i in range(1000):
        log.info("step %d", i, extra={f"k{j}": j for j in range(50)})
    entries = breadcrumbs.current_entries()
    assert len(entries) <= max(10, breadcrumbs.capacity)
    made = [breadcrumbs.crumb_data(e[5], e[6]) for e in entries]
    assert all(data is not None and len(data) == breadcrumbs.MAX_DATA_KEYS for data in made)
    assert all(len(e) == 7 for e in entries), "no record, traceback or frame is kept"


def test_init_records_the_root_loggers_records(memory) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    client = alertkit.init(backends=[memory], sample_system=False, register_atexit=False)
    try:
        logging.getLogger("tests.crumbs.plain").info("no AlertHandler on this logger")
        client.log({"eventmessage": "boom"}, "error", exc_info=False)
        assert client.flush(5)
        assert [c["message"] for c in crumbs_of(memory)] == ["no AlertHandler on this logger"]
        # A second init replaces the recorder rather than adding one.
        recorders = [h for h in root.handlers if isinstance(h, breadcrumbs.BreadcrumbHandler)]
        assert len(recorders) == 1
    finally:
        root.setLevel(level)
        previous = submit.replace_default(None)
        if previous is not None:
            previous.shutdown(2)
        breadcrumbs.install_logging(None)
    assert not [h for h in root.handlers if isinstance(h, breadcrumbs.BreadcrumbHandler)]


def test_a_record_an_alert_handler_took_is_one_crumb_under_init(memory) -> None:
    """With ``alertkit.init`` the root logger's recorder sees every record an ``AlertHandler``
    below it already made a crumb of: each record is still one crumb (the recorder sees the crumb
    is the last one appended and does not look for the trail), and a record no handler took is
    recorded by the root's recorder."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    client = alertkit.init(backends=[memory], sample_system=False, register_atexit=False)
    log = logging.getLogger("tests.crumbs.under_init")
    handler = AlertHandler(client=client, level=logging.ERROR)
    log.addHandler(handler)
    try:
        log.info("step %d", 1)
        log.error("first failure")
        logging.getLogger("tests.crumbs.elsewhere").warning("no AlertHandler here")
        log.info("step %d", 2)
        log.error("second failure")
        assert client.flush(5)
        second = next(e for e in memory.envelopes if e.event.event_message == "second failure")
        assert [c["message"] for c in second.breadcrumbs or ()] == [
            "step 1",
            "first failure",
            "no AlertHandler here",
            "step 2",
        ]
    finally:
        log.removeHandler(handler)
        root.setLevel(level)
        previous = submit.replace_default(None)
        if previous is not None:
            previous.shutdown(2)
        breadcrumbs.install_logging(None)


def test_an_escalation_carries_its_headline_errors_breadcrumbs(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    with client.scope(escalate_from="error"):
        log.info("charging card")
        log.error("card declined", extra={"fingerprint": ["payments"]})
    assert client.flush(5)
    [escalation] = memory.envelopes
    assert escalation.request_log is not None, "one event: the request's escalation"
    assert [c["message"] for c in escalation.breadcrumbs] == ["charging card"]
    assert escalation.fingerprint == ["payments"]


def test_consecutive_errors_share_their_crumbs_and_new_ones_are_still_scrubbed(
    make_client, make_logger, memory
):
    client = make_client(max_breadcrumbs=5)
    log = make_logger(client)
    with client.scope():  # a trail of its own
        for i in range(5):
            log.info("step %s", i)
        for i in range(4):
            log.error("order %s failed", i)
        log.info("retry with password=hunter2")
        log.error("order 4 failed")
    assert client.flush(5)
    trails = [crumbs_of(memory, index) for index in range(5)]
    assert [c["message"] for c in trails[1]] == [
        "step 1", "step 2", "step 3", "step 4", "order 0 failed"
    ]  # fmt: skip
    assert [c["message"] for c in trails[4]][-2:] == [
        "order 3 failed",
        "retry with password=[Filtered]",
    ]
    for older, newer in itertools.pairwise(trails[:4]):
        assert all(a is b for a, b in zip(older[1:], newer, strict=False)), "made once, shared"


@pytest.mark.parametrize("offset", [0.0, 0.5, 0.9994, 0.9995, 0.9999997, 1 - 1e-7, 2.000001])
def test_a_crumbs_time_is_written_as_isoformat_writes_it(make_client, make_logger, memory, offset):
    client = make_client()
    log = make_logger(client)
    base = float(int(client.breadcrumbs.since) + 10)
    times = [base + offset, base + offset + 0.25, base + 1 + offset]

    def set_created(record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            record.created = times.pop(0)
        return True

    log.addFilter(set_created)
    try:
        with client.scope():  # a trail of its own: no crumb of another test
            for i in range(3):
                log.info("tick %s", i)
            log.error("boom")
    finally:
        log.removeFilter(set_created)
    assert client.flush(5)
    expected = [
        datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
        for t in (base + offset, base + offset + 0.25, base + 1 + offset)
    ]
    assert [c["timestamp"] for c in crumbs_of(memory)] == expected


def test_an_errors_crumb_keeps_its_extra_when_before_send_changes_the_details(
    make_client: Any, make_logger: Any, memory: MemoryBackend
) -> None:
    """An error's extra fields are read once for its event and its crumb: a before_send that
    changes the event's details in place does not change what the next event's crumb shows."""

    def hook(event: Any, hint: dict[str, Any]) -> Any:
        hint["details"]["order"] = "changed"
        hint["details"]["added"] = 1
        return event

    client = make_client(before_send=hook)
    log = make_logger(client)
    log.error("order %s failed", 7, extra={"order": 7, "region": "eu"})
    log.error("second")
    assert client.flush(5)
    first, _ = memory.envelopes
    assert first.details == {"order": "changed", "region": "eu", "added": 1}
    crumb = crumbs_of(memory)[-1]
    assert crumb["message"] == "order 7 failed"
    assert crumb["data"] == {"order": 7, "region": "eu"}


def test_tasks_inside_a_scope_start_from_its_trail_and_never_mix(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    log.info("before the scope")

    async def job(name: str) -> None:
        log.info("%s step", name)
        await asyncio.sleep(0.01)
        log.error("%s failed", name)

    async def main() -> None:
        with client.scope():
            log.info("in the scope")
            await asyncio.gather(job("a"), job("b"))
            log.error("the scope's own")
        log.error("after the scope")

    asyncio.run(main())
    assert client.flush(5)
    by_message = {
        e.event.event_message: [c["message"] for c in e.breadcrumbs] for e in memory.envelopes
    }
    for name in ("a", "b"):
        assert by_message[f"{name} failed"] == ["in the scope", f"{name} step"]
    assert by_message["the scope's own"] == ["in the scope"]
    assert by_message["after the scope"] == ["before the scope"]


def test_a_scope_left_in_a_task_gives_the_task_its_trail_back(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)

    async def main() -> None:
        log.info("task before")
        with client.scope():
            log.info("scope only")
        log.error("task after")

    asyncio.run(main())
    assert client.flush(5)
    [event] = memory.envelopes
    assert [c["message"] for c in event.breadcrumbs] == ["task before"]


def test_a_scope_makes_its_trail_at_its_first_crumb(make_client, make_logger, memory):
    client = make_client()
    log = make_logger(client)
    with client.scope() as scope:
        assert scope.crumbs is None  # nothing recorded: no trail made
        assert breadcrumbs.current_entries() == ()
        log.info("first")
        assert scope.crumbs is not None
        assert [e[3] for e in breadcrumbs.current_entries()] == ["first"]


class _TrailLess(MemoryBackend):
    """A destination whose wire format has no place for breadcrumbs (as OTLP's)."""

    sends_breadcrumbs = False


@pytest.mark.parametrize(
    ("options", "taken"),
    [
        ({}, False),
        ({"extra_backend": True}, True),
        ({"before_send": lambda event, hint: event}, True),
        ({"processors": [lambda envelope: envelope]}, True),
        ({"on_drop": lambda envelope, reason: None}, True),
    ],
    ids=["nothing-reads-it", "another-backend-sends-it", "before_send", "processors", "on_drop"],
)
def test_errors_take_a_trail_only_when_a_destination_sends_it_or_a_hook_may_read_it(
    make_logger, options, taken
):
    trail_less = _TrailLess()
    backends: list[Any] = [trail_less]
    if options.pop("extra_backend", False):
        backends.append(MemoryBackend())
    client = Client(backends=backends, sample_system=False, register_atexit=False, **options)
    try:
        log = make_logger(client)
        log.info("loaded cart")
        log.error("payment failed")
        assert client.flush(5)
        crumbs = trail_less.envelopes[-1].breadcrumbs
        assert [c["message"] for c in crumbs] == (["loaded cart"] if taken else [])
    finally:
        client.shutdown(2)


def test_an_errors_crumb_is_its_record_as_the_handler_saw_it(
    make_client: Any, make_logger: Any, memory: MemoryBackend
) -> None:
    """The error's crumb reads its extra fields on the policy thread, from the copy the handler
    took: a handler after alertkit's that changes the record changes neither the event nor the
    crumb; the fields that steer delivery stay out of the crumb."""

    class Meddler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.order = "changed"  # type: ignore[attr-defined]
            record.added = 1  # type: ignore[attr-defined]
            record.msg = "meddled %s"

    client = make_client()
    log = make_logger(client)
    meddler = Meddler()
    log.addHandler(meddler)
    try:
        log.error("order %s failed", 7, extra={"order": 7, "incident_key": "k-7"})
        log.error("second")
    finally:
        log.removeHandler(meddler)
    assert client.flush(5)
    first, _ = memory.envelopes
    assert first.details == {"order": 7} and first.incident_key == "k-7"
    assert first.template == "order %s failed"
    crumb = crumbs_of(memory)[-1]
    assert crumb["message"] == "order 7 failed" and crumb["level"] == "error"
    assert crumb["data"] == {"order": 7}


def test_an_exceptions_crumb_keeps_no_traceback_alive(
    make_client: Any, make_logger: Any, memory: MemoryBackend
) -> None:
    """The crumb of a record with exc_info keeps its message and extra values, never the
    traceback: the trail holds nothing of the frames it passed through nor of their locals."""
    import gc
    import weakref

    class Big:
        """A local of the frame the exception passes through."""

    client = make_client()
    log = make_logger(client)
    # pytest attaches its capturing handlers to a logger that exists when a test starts, and
    # they hold every record (with its traceback) to the end of the test: not ours to test.
    for other in [h for h in log.handlers if not isinstance(h, AlertHandler)]:
        log.removeHandler(other)

    def fail(big: Big) -> None:
        raise ValueError("refused")

    big = Big()
    alive = weakref.ref(big)
    try:
        fail(big)
    except ValueError:
        log.exception("order failed", extra={"order": 8})
    del big
    assert client.flush(5)
    gc.collect()
    assert alive() is None, "the trail (or the queue) kept the traceback's frames alive"
    log.error("next")
    assert client.flush(5)
    crumb = crumbs_of(memory)[-1]
    assert crumb["message"] == "order failed" and crumb["data"] == {"order": 8}
