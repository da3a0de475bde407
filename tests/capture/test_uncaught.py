"""Uncaught exceptions: sys.excepthook, threading.excepthook, sys.unraisablehook (asyncio is in
tests/integrations/test_asyncio.py): one event each, the previous hook always called, hooks put
back on shutdown, and the fatal event of a dying program delivered before it exits."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import alertkit
from alertkit import Client
from alertkit.capture import submit, uncaught
from alertkit.spool.store import Spool
from alertkit.testing import MemoryBackend
from tests.standins.http import Reply, ScriptedServer

ROOT = Path(__file__).resolve().parents[2]


class Boom(Exception):
    """An application error."""


@pytest.fixture(autouse=True)
def restore_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Each test starts with recording hooks in place (so 'the previous hook' is observable and
    pytest's own unraisable hook is not fed), and every alertkit hook is gone afterwards."""
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: calls.append(("sys", info)))
    monkeypatch.setattr(threading, "excepthook", lambda args: calls.append(("thread", args)))
    monkeypatch.setattr(sys, "unraisablehook", lambda u: calls.append(("unraisable", u)))
    yield calls
    uncaught.uninstall()


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(
        backends=[memory], sample_system=False, register_atexit=False, capture_uncaught=True
    )
    yield made
    made.shutdown(2.0)


def raised() -> tuple[type[BaseException], BaseException, Any]:
    try:
        raise Boom("card refused")
    except Boom as exc:
        return type(exc), exc, exc.__traceback__


def test_excepthook_reports_a_fatal_event_then_calls_the_previous_hook(
    client: Client, memory: MemoryBackend, restore_hooks: list[tuple[str, Any]]
) -> None:
    info = raised()
    sys.excepthook(*info)
    assert restore_hooks == [("sys", info)], "the previous hook got the very same exception"
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.event.log_level == "fatal"
    assert envelope.event.event_type.endswith("Boom")
    assert envelope.event.event_message == "card refused"
    assert envelope.event.event_stacktrace, "with its stack trace"
    assert envelope.details["mechanism"] == "sys.excepthook"


def test_an_exception_a_web_integration_reported_is_not_reported_again(
    client: Client, memory: MemoryBackend, restore_hooks: list[tuple[str, Any]]
) -> None:
    """A WSGI server that prints the app's exception through sys.excepthook (uWSGI does): the
    request's event is the one report."""
    from alertkit.integrations.wsgi import AlertkitMiddleware

    def app(environ: Any, start_response: Any) -> Any:
        raise Boom("card refused")

    wrapped = AlertkitMiddleware(app, client=client)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/pay",
        "SERVER_NAME": "h",
        "SERVER_PORT": "80",
    }
    with pytest.raises(Boom) as caught:
        wrapped(environ, lambda *a: None)
    sys.excepthook(Boom, caught.value, caught.value.__traceback__)
    assert len(restore_hooks) == 1, "the traceback still prints"
    assert client.flush(5)
    assert len(memory.envelopes) == 1, [e.event.event_message for e in memory.envelopes]
    assert "mechanism" not in memory.envelopes[0].details


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_keyboard_interrupt_and_system_exit_are_not_reported(
    client: Client,
    memory: MemoryBackend,
    restore_hooks: list[tuple[str, Any]],
    exc: BaseException,
) -> None:
    sys.excepthook(type(exc), exc, None)
    assert len(restore_hooks) == 1, "the previous hook still runs"
    assert client.flush(5)
    assert memory.envelopes == []


def test_a_thread_that_dies_is_an_error_event_naming_the_thread(
    client: Client, memory: MemoryBackend, restore_hooks: list[tuple[str, Any]]
) -> None:
    def work() -> None:
        raise Boom("worker failed")

    thread = threading.Thread(target=work, name="billing-worker")
    thread.start()
    thread.join(5)
    assert [kind for kind, _ in restore_hooks] == ["thread"], "the previous hook was called"
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.event.log_level == "error"
    assert envelope.event.event_message == "worker failed"
    assert envelope.details["thread"] == "billing-worker"
    assert envelope.details["mechanism"] == "threading.excepthook"


class Leaky:
    def __del__(self) -> None:
        raise Boom("close failed in __del__")


def test_an_exception_in_del_is_a_warning_event(
    client: Client, memory: MemoryBackend, restore_hooks: list[tuple[str, Any]]
) -> None:
    obj = Leaky()
    del obj
    gc.collect()
    assert [kind for kind, _ in restore_hooks] == ["unraisable"], "the previous hook was called"
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.event.log_level == "warning"
    assert envelope.event.event_message == "close failed in __del__"
    assert "Leaky" in envelope.details["where"], "says where it was ignored"


def test_installing_twice_reports_once(client: Client, memory: MemoryBackend) -> None:
    hook = sys.excepthook
    uncaught.install(client)
    uncaught.install(client, {"excepthook"})
    assert sys.excepthook is hook, "the installed hook is reused"
    sys.excepthook(*raised())
    assert client.flush(5)
    assert len(memory.envelopes) == 1


def test_two_clients_each_get_the_event_from_one_hook(memory: MemoryBackend) -> None:
    other = MemoryBackend()
    first = Client(backends=[memory], sample_system=False, register_atexit=False,
                   capture_uncaught={"excepthook"})  # fmt: skip
    second = Client(backends=[other], sample_system=False, register_atexit=False,
                    capture_uncaught={"excepthook"})  # fmt: skip
    try:
        sys.excepthook(*raised())
        assert first.flush(5) and second.flush(5)
        assert len(memory.envelopes) == 1 and len(other.envelopes) == 1
    finally:
        first.shutdown(2)
        second.shutdown(2)


def test_a_client_the_application_keeps_no_reference_to_still_reports(
    memory: MemoryBackend,
) -> None:
    Client(backends=[memory], sample_system=False, register_atexit=False,
           capture_uncaught={"excepthook"})  # fmt: skip
    gc.collect()
    sys.excepthook(*raised())
    [kept] = uncaught._listeners("excepthook")
    try:
        assert kept.flush(5)
        assert len(memory.envelopes) == 1
    finally:
        kept.shutdown(2)  # type: ignore[attr-defined]


def test_shutdown_restores_every_previous_hook(memory: MemoryBackend) -> None:
    before = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    made = Client(backends=[memory], sample_system=False, register_atexit=False,
                  capture_uncaught=True)  # fmt: skip
    assert (sys.excepthook, threading.excepthook, sys.unraisablehook) != before
    made.shutdown(2)
    assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == before


def test_uninstall_restores_the_hooks_and_reports_nothing_more(
    client: Client, memory: MemoryBackend, restore_hooks: list[tuple[str, Any]]
) -> None:
    client.uninstall()
    sys.excepthook(*raised())
    assert len(restore_hooks) == 1
    assert client.flush(5)
    assert memory.envelopes == []


def test_a_hook_installed_on_top_of_ours_is_left_in_place(
    client: Client, memory: MemoryBackend
) -> None:
    ours = sys.excepthook
    theirs_calls: list[Any] = []

    def theirs(*info: Any) -> None:
        theirs_calls.append(info)
        ours(*info)

    sys.excepthook = theirs
    client.uninstall()
    assert sys.excepthook is theirs, "never pull the rug from under a later hook"
    sys.excepthook(*raised())
    assert len(theirs_calls) == 1
    assert client.flush(5)
    assert memory.envelopes == [], "ours passes calls through once nobody listens"
    uncaught.install(client, {"excepthook"})
    sys.excepthook(*raised())
    assert len(theirs_calls) == 2, "installed again on top of theirs, which still runs"
    assert client.flush(5)
    assert len(memory.envelopes) == 1, "the old hook in their chain stays quiet: one report"


class BadCause(Exception):
    """An exception whose chain cannot be read: alertkit's part of the hook fails on it."""

    @property  # type: ignore[override]
    def __cause__(self) -> BaseException | None:
        raise RuntimeError("no cause for you")


@pytest.mark.allow_internal_errors
def test_a_failure_inside_the_hook_never_replaces_the_applications_traceback(
    client: Client,
    restore_hooks: list[tuple[str, Any]],
    internal_errors: list[BaseException],
) -> None:
    try:
        raise BadCause("original")
    except BadCause as exc:
        info = (type(exc), exc, exc.__traceback__)
    sys.excepthook(*info)  # must not raise
    assert restore_hooks == [("sys", info)], "the previous hook got the application's exception"
    assert [str(e) for e in internal_errors] == ["no cause for you"], "swallowed and logged"


@pytest.mark.parametrize(
    ("value", "error"),
    [("excepthook", TypeError), ({"excepthook", "signals"}, ValueError), (1, TypeError)],
)
def test_a_bad_capture_uncaught_value_is_rejected_naming_the_option(
    value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="capture_uncaught"):
        Client(backends=[MemoryBackend()], sample_system=False, register_atexit=False,
               capture_uncaught=value)  # fmt: skip


def test_each_part_can_be_switched_off(memory: MemoryBackend) -> None:
    before = sys.excepthook, sys.unraisablehook
    made = Client(backends=[memory], sample_system=False, register_atexit=False,
                  capture_uncaught=uncaught.PARTS - {"excepthook", "unraisable"})  # fmt: skip
    try:
        assert (sys.excepthook, sys.unraisablehook) == before
        assert uncaught.installed("threading")
    finally:
        made.shutdown(2)


def test_init_reports_uncaught_exceptions_by_default(memory: MemoryBackend) -> None:
    previous = submit.replace_default(None)
    try:
        made = alertkit.init(backends=[memory], sample_system=False, register_atexit=False)
        assert uncaught.installed("excepthook") and uncaught.installed("threading")
        alertkit.init(backends=[memory], sample_system=False, register_atexit=False,
                      capture_uncaught=False)  # fmt: skip
        assert not uncaught.installed("excepthook"), "the replaced client's hooks went with it"
        assert made._is_shut_down
    finally:
        current = submit.replace_default(previous)
        if current is not None:
            current.shutdown(2)  # type: ignore[attr-defined]


# -- a real program dying of an uncaught exception ----------------------------------------------

PROGRAM = """
import sys, alertkit
alertkit.init(api_key="k", backends=[sys.argv[1] + "/v1/events"], sample_system=False,
              shutdown_timeout=float(sys.argv[2]), {options})
{body}
"""


def run_program(url: str, body: str, budget: float = 5.0, **options: str) -> tuple[Any, float]:
    source = PROGRAM.format(
        options=", ".join(f"{k}={v}" for k, v in options.items()), body=textwrap.dedent(body)
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", source, url, str(budget)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return proc, time.monotonic() - start


def test_a_program_dying_of_an_uncaught_exception_delivers_one_fatal_event() -> None:
    with ScriptedServer() as server:
        proc, _ = run_program(server.url, "raise ValueError('disk on fire')")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr, "the traceback still prints"
    assert "ValueError: disk on fire" in proc.stderr
    bodies = [request.json() for request in server.requests]
    assert len(bodies) == 1, "exactly one event reached the event API before exit"
    assert bodies[0]["logLevel"] == "fatal"
    assert bodies[0]["eventType"] == "ValueError"
    assert bodies[0]["eventMessage"] == "disk on fire"
    assert bodies[0]["eventStacktrace"][0]["traceLines"]


def test_without_an_exit_handler_the_hook_itself_delivers() -> None:
    with ScriptedServer() as server:
        proc, _ = run_program(server.url, "raise ValueError('late')", register_atexit="False")
    assert proc.returncode == 1
    assert [r.json()["logLevel"] for r in server.requests] == ["fatal"]


def test_a_program_ended_by_keyboard_interrupt_reports_nothing() -> None:
    with ScriptedServer() as server:
        proc, _ = run_program(server.url, "raise KeyboardInterrupt")
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr
    assert server.requests == []


def test_a_hanging_destination_cannot_hold_the_exit_past_the_budget(tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    with ScriptedServer([Reply(hang=True)]) as server:
        proc, elapsed = run_program(
            server.url, "raise ValueError('stuck')", budget=0.5, spool_path=repr(str(spool))
        )
    assert proc.returncode == 1
    assert "ValueError: stuck" in proc.stderr
    assert elapsed < 0.5 + 15, "exit within the budget (plus interpreter start on a busy box)"
    with Spool(spool) as kept:
        assert kept.counts().get("http") == 1, "the fatal event is spooled for the next start"
