"""AlertHandler: the record mapping, dictConfig, no feedback loops, never raising into the app."""

from __future__ import annotations

import logging
import logging.config
import time
from collections.abc import Iterator

import pytest

from alertkit import AlertHandler, Client, get_logger
from alertkit.backends import register
from alertkit.capture import breadcrumbs
from alertkit.testing import MemoryBackend, capture_events


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    c = Client(backends=[memory], sample_system=False, register_atexit=False)
    yield c
    c.shutdown(2)


@pytest.fixture
def logger(client: Client) -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.handler.app")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler = AlertHandler(client=client, level=logging.DEBUG)
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


class PaymentDeclined(Exception):
    pass


def test_record_mapping(logger: logging.Logger, client: Client, memory: MemoryBackend) -> None:
    logger.warning("Disk %s at %s%%", "sda", 93, extra={"host": "web1", "tags": {"dc": "eu"}})
    assert client.flush(5)
    envelope = memory.envelopes[0]
    event = envelope.event
    assert event.event_message == "Disk sda at 93%"
    assert event.event_type == "tests.handler.app", "no exception: the logger name"
    assert event.classification == "issue" and event.log_level == "warning"
    assert envelope.template == "Disk %s at %s%%"
    assert envelope.logger_name == "tests.handler.app"
    assert envelope.details == {"host": "web1"}
    assert envelope.tags == {"dc": "eu"}


def test_debug_and_info_are_classified_log(logger, client, memory) -> None:
    logger.info("started")
    logger.debug("detail")
    logger.critical("down")
    assert client.flush(5)
    got = [(e.event.log_level, e.event.classification) for e in memory.envelopes]
    assert got == [("info", "log"), ("debug", "log"), ("fatal", "issue")]


def test_exception_records_carry_type_and_trace(logger, client, memory) -> None:
    try:
        raise PaymentDeclined("card refused")
    except PaymentDeclined:
        logger.exception("checkout failed")
    assert client.flush(5)
    envelope = memory.envelopes[0]
    assert envelope.event.event_type == f"{__name__}.PaymentDeclined"
    assert envelope.event.event_message == "checkout failed"
    assert envelope.event.event_stacktrace[0].message == "card refused"
    assert "PaymentDeclined: card refused" in envelope.exc_text


def test_steering_extras_do_not_become_details(logger, client, memory) -> None:
    logger.error(
        "x",
        extra={
            "incident_key": "db-down",
            "links": [{"href": "https://a", "text": "a"}],
            "images": [{"src": "https://i", "alt": "g"}],
            "other": 1,
        },
    )
    assert client.flush(5)
    envelope = memory.envelopes[0]
    assert envelope.incident_key == "db-down"
    assert envelope.links == [{"href": "https://a", "text": "a"}]
    assert envelope.images == [{"src": "https://i", "alt": "g"}]
    assert envelope.details == {"other": 1}


def test_handler_incident_key_wins(client, memory) -> None:
    log = logging.getLogger("tests.handler.keyed")
    log.propagate = False
    handler = AlertHandler(client=client, incident_key="fixed")
    log.addHandler(handler)
    log.error("x", extra={"incident_key": "from-call"})
    log.removeHandler(handler)
    assert client.flush(5)
    assert memory.envelopes[0].incident_key == "fixed"


def test_default_level_is_warning(client, memory) -> None:
    log = logging.getLogger("tests.handler.levels")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler = AlertHandler(client=client)
    log.addHandler(handler)
    log.info("not sent")
    log.warning("sent")
    log.removeHandler(handler)
    assert client.flush(5)
    assert [e.event.event_message for e in memory.envelopes] == ["sent"]


def test_own_and_library_loggers_are_ignored(client, memory) -> None:
    handler = AlertHandler(client=client)
    for name in ("alertkit", "alertkit.worker", "urllib3.connectionpool", "redis", "app"):
        handler.handle(logging.LogRecord(name, logging.ERROR, __file__, 1, "boom", None, None))
    assert client.flush(5)
    assert [e.logger_name for e in memory.envelopes] == ["app"]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_emit_never_raises_into_the_application(client, memory) -> None:
    handler = AlertHandler(client=client)

    def record(msg, args=(), **extra):
        rec = logging.LogRecord("app", logging.ERROR, __file__, 1, msg, args, None)
        rec.__dict__.update(extra)
        return rec

    handler.handle(record("%d items", ("not a number",)))
    handler.handle(record("%s and %s", ("one",)))
    handler.handle(record(Unprintable()))
    handler.handle(record("extra", obj=Unprintable(), blob=b"\xff\xfe", s="\udcff"))
    assert client.flush(5)
    assert len(memory.envelopes) == 4
    assert "message arguments failed to format" in memory.envelopes[0].event.event_message
    assert memory.envelopes[2].event.event_message.startswith("<unprintable")
    assert memory.envelopes[3].details["obj"].startswith("<unrepresentable")
    assert memory.envelopes[3].details["s"] == "?"


def test_dictconfig_with_plain_keyword_arguments(tmp_path) -> None:
    register(MemoryBackend)
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "alerts": {
                    "class": "alertkit.AlertHandler",
                    "level": "ERROR",
                    "backends": ["memory://", f"local://{tmp_path}/inbox.db"],
                    "app_version": "9.9",
                    "deployment_stage": "staging",
                    "register_atexit": False,
                }
            },
            "loggers": {
                "tests.dictconfig": {"handlers": ["alerts"], "level": "INFO", "propagate": False}
            },
        }
    )
    log = logging.getLogger("tests.dictconfig")
    handler = log.handlers[0]
    assert isinstance(handler, AlertHandler) and handler.level == logging.ERROR
    log.warning("below the handler level")
    log.error("payment failed")
    client = handler.client
    assert client.flush(5)
    memory = client.backends[0]
    assert [e.event.event_message for e in memory.envelopes] == ["payment failed"]
    assert memory.envelopes[0].event.context_app_version == "9.9"
    from alertkit.backends.local import read_events

    assert read_events(tmp_path / "inbox.db")[0]["message"] == "payment failed"
    log.removeHandler(handler)
    handler.close()
    assert client._shut_down.wait(5), "a handler's own client shuts down once it has delivered"


def test_get_logger_attaches_one_handler() -> None:
    with capture_events() as events:
        first = get_logger("tests.get_logger")
        second = get_logger("tests.get_logger")
        assert first is second
        assert sum(isinstance(h, AlertHandler) for h in first.handlers) == 1
        first.propagate = False
        first.error("once")
    assert [e.event_message for e in events] == ["once"]
    for handler in list(first.handlers):
        first.removeHandler(handler)


def test_handler_rejects_client_plus_options(client) -> None:
    with pytest.raises(TypeError, match="either client"):
        AlertHandler(client=client, app_version="1")


def test_queued_records_are_small_snapshots_the_gc_does_not_scan(client, memory) -> None:
    """emit keeps what the event needs, not the record: attributes a later handler or
    formatter adds or changes are not picked up, and a backlog (of records or of events) adds
    nothing for the garbage collector once a young collection has seen it."""
    import gc

    from alertkit.capture.handler import RecordCapture

    queued: list[object] = []
    submit = client.submit_capture
    client.submit_capture = lambda capture: queued.append(capture) or submit(capture)  # type: ignore[method-assign]
    log = logging.getLogger("tests.handler.snapshot")
    log.propagate = False
    handler = AlertHandler(client=client, level=logging.DEBUG)
    log.addHandler(handler)

    class Later(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.added_later = "x"  # type: ignore[attr-defined]
            record.msg = "changed %s"

    log.addHandler(Later())
    gc.disable()  # what the call made stays young until the collection below
    try:
        log.error("order %s failed", 7, extra={"order": 7, "region": "eu"})
        crumb = breadcrumbs.current_items()[-1]
        capture = queued[0]
        assert isinstance(capture, RecordCapture) and not gc.is_tracked(capture)
        assert crumb[3] == "order 7 failed" and gc.is_tracked(crumb)
        gc.collect(0)  # one young collection stops tracking tuples of plain values
    finally:
        gc.enable()
        log.handlers.clear()
    assert capture.extra_names == ("order", "region") and capture.extra_values == (7, "eu")
    assert not gc.is_tracked(capture.fields) and not gc.is_tracked(capture.extra_values)
    assert not gc.is_tracked(crumb), "the error's crumb holds plain values, side by side"
    assert client.flush(5)
    envelope = memory.envelopes[0]
    # Nor does the event built from it on its way to the backends (links and images: no lists).
    # An error's breadcrumbs are the one exception: errors are rare and the trail is bounded.
    tracked = [
        f
        for f in envelope.__struct_fields__
        if f != "breadcrumbs" and gc.is_tracked(getattr(envelope, f))
    ]
    assert not gc.is_tracked(envelope) and tracked == []
    assert envelope.details == {"order": 7, "region": "eu"}
    assert envelope.template == "order %s failed"
    assert envelope.event.event_message == "order 7 failed"


def _log_through(handler: logging.Handler, *calls: tuple[int, str]) -> None:
    """Log each (level, message) through a logger that has only ``handler``."""
    log = logging.getLogger(f"tests.handler.{type(handler).__name__}.{len(calls)}")
    log.propagate = False
    log.addHandler(handler)
    try:
        for level, message in calls:
            log.log(level, message)
    finally:
        log.removeHandler(handler)


def test_filters_still_apply_without_the_handler_lock(client, memory) -> None:
    handler = AlertHandler(client=client, level=logging.DEBUG)
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    _log_through(handler, (logging.ERROR, "keep me"), (logging.ERROR, "a secret one"))
    assert client.flush(5)
    assert [e.event.event_message for e in memory.envelopes] == ["keep me"]


def test_a_subclass_emit_is_called_and_a_direct_emit_queues(client, memory) -> None:
    """``handle`` does ``emit``'s work in its own frame; a subclass with an ``emit`` of its own
    still has it called for every record the filters pass, and its ``super().emit()`` queues."""
    seen: list[str] = []

    class Counting(AlertHandler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())
            super().emit(record)

    handler = Counting(client=client, level=logging.ERROR)
    handler.addFilter(lambda record: "skip" not in record.getMessage())
    calls = [(logging.ERROR, "first 1"), (logging.ERROR, "skip me"), (logging.WARNING, "below")]
    _log_through(handler, *calls)
    plain = AlertHandler(client=client, level=logging.ERROR)
    plain.addFilter(lambda record: False)  # emit is past the filters: they are not asked again
    plain.emit(
        logging.LogRecord("tests.handler.direct", logging.ERROR, __file__, 1, "direct", None, None)
    )
    assert client.flush(5)
    assert seen == ["first 1", "below"]  # (a breadcrumb: its emit sees it too)
    assert sorted(e.event.event_message for e in memory.envelopes) == ["direct", "first 1"]


def test_a_handler_incident_key_that_is_not_a_string_is_refused_at_construction(client) -> None:
    """Every value of a log record's envelope has its declared type (the limits trust it), so a
    misconfigured key fails here, not as an odd event later."""
    with pytest.raises(TypeError, match="incident_key must be a string, not int"):
        AlertHandler(client=client, incident_key=42)  # type: ignore[arg-type]


def test_close_and_flush_never_wait_for_a_hanging_destination(tmp_path) -> None:
    """``dictConfig`` and ``logging.shutdown`` call them holding the logging lock."""
    from tests.standins.http import Reply, ScriptedServer

    with ScriptedServer([Reply(hang=True)]) as server:
        handler = AlertHandler(
            backends=[f"{server.url}/v1/events"],
            api_key="k",
            spool_path=tmp_path / "spool.db",
            sample_system=False,
            register_atexit=False,
            shutdown_timeout=0.5,
        )
        log = logging.getLogger("tests.handler.hanging")
        log.propagate = False
        log.addHandler(handler)
        log.error("in flight")
        start = time.monotonic()
        handler.flush()
        handler.close()
        assert time.monotonic() - start < 0.3, "close() and flush() return at once"
        log.removeHandler(handler)
        client = handler.client
        client.shutdown(0.5)  # what atexit does: the event is spooled, not lost
        assert client.stats()["http"]["spooled"] == 1
