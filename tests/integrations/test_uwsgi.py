"""uWSGI: workers deliver their own events (pre-fork and ``--lazy-apps``); where threads cannot
run (uWSGI without ``--enable-threads``) alertkit says so once and delivers synchronously, one
attempt with a short timeout, instead of queueing into a thread that never runs.

uWSGI 2.0.31 runs Python threads whatever its options say (``--enable-threads`` is a stub that
is true by default), so the detection is tested with a ``uwsgi`` module carrying the options of
an older uWSGI, and the synchronous mode for real inside a real uWSGI by asking for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import types
from pathlib import Path

import pytest

from alertkit import Client
from alertkit.capture import client as client_module
from alertkit.testing import MemoryBackend
from tests.integrations.processes import (
    boom,
    failed_requests,
    running,
    start,
    wait_until,
)
from tests.standins.http import Reply, ScriptedServer, free_port

UWSGI = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")


def fake_uwsgi(monkeypatch, opt: dict[str, object], has_threads: int | None = 0) -> None:
    """What ``import uwsgi`` gives an application inside uWSGI: its options, and (since 2.0)
    whether it runs Python threads."""
    module = types.ModuleType("uwsgi")
    module.opt = opt  # type: ignore[attr-defined]
    if has_threads is not None:
        module.has_threads = has_threads  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    monkeypatch.setattr(client_module, "_said_synchronous", False)


def alertkit_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("alertkit")}


def test_without_threads_events_are_delivered_on_the_caller_s_thread(monkeypatch, caplog) -> None:
    fake_uwsgi(monkeypatch, {"master": True, "processes": b"4"})
    before = alertkit_threads()
    with ScriptedServer() as server, caplog.at_level(logging.WARNING, logger="alertkit"):
        clients = [
            Client(api_key="k", backends=[f"{server.url}/v1/events"], register_atexit=False)
            for _ in range(2)
        ]
        try:
            assert all(c.synchronous for c in clients)
            clients[0].log({"eventmessage": "sent before log() returns"})
            assert [r.json()["eventMessage"] for r in server.requests] == [
                "sent before log() returns"
            ]
            assert alertkit_threads() <= before  # no delivery thread was started
            assert clients[0].stats()["http"]["delivered"] == 1
        finally:
            for client in clients:
                client.shutdown(1)
    said = [r for r in caplog.records if "--enable-threads" in r.getMessage()]
    assert len(said) == 1  # once per process, not once per client


@pytest.mark.parametrize(
    ("opt", "has_threads"),
    [
        ({"enable-threads": True}, None),
        ({"enable-threads": b"true"}, None),
        ({"threads": b"4"}, None),
        ({}, 1),  # uWSGI >= 2.0.x: threads on by default, said by uwsgi.has_threads
    ],
)
def test_threads_enabled_keep_background_delivery(monkeypatch, opt, has_threads) -> None:
    fake_uwsgi(monkeypatch, opt, has_threads)
    client = Client(backends=[MemoryBackend()], register_atexit=False)
    try:
        assert client.synchronous is False
    finally:
        client.shutdown(1)


def test_false_values_of_enable_threads_count_as_off(monkeypatch) -> None:
    fake_uwsgi(monkeypatch, {"enable-threads": [b"true", b"false"]})
    client = Client(backends=[MemoryBackend()], register_atexit=False)
    try:
        assert client.synchronous is True
    finally:
        client.shutdown(1)


def test_a_hanging_destination_holds_a_synchronous_caller_only_for_the_short_timeout() -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        client = Client(
            api_key="k",
            backends=[f"{server.url}/v1/events"],
            register_atexit=False,
            synchronous=True,
            timeout=30,
        )
        done = threading.Event()

        def log() -> None:
            client.log({"eventmessage": "into the void"})
            done.set()

        threading.Thread(target=log, daemon=True).start()
        try:
            assert done.wait(10)  # bounded by SYNC_TIMEOUT (1 s), not by timeout=30
            stats = client.stats()["http"]
            assert stats["dropped"] == 1
            assert "not retried" in str(stats["last_reason"]["dropped"])
        finally:
            server.release.set()
            client.shutdown(1)


def test_synchronous_mode_spools_what_its_one_attempt_could_not_send(tmp_path) -> None:
    with ScriptedServer([Reply(status=503)]) as server:
        client = Client(
            api_key="k",
            backends=[f"{server.url}/v1/events"],
            register_atexit=False,
            synchronous=True,
            spool_path=tmp_path / "spool.db",
        )
        try:
            client.log({"eventmessage": "kept for later"})
            assert client.stats()["http"]["spooled"] == 1
        finally:
            client.shutdown(1)


def test_the_option_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="synchronous"):
        Client(backends=[MemoryBackend()], register_atexit=False, synchronous="yes")  # type: ignore[arg-type]


APP = r"""
import os

import alertkit
from alertkit.integrations.wsgi import AlertkitMiddleware

alertkit.init(
    api_key="k",
    backends=[os.environ["UWSGI_TEST_URL"]],
    shutdown_timeout=5,
    synchronous=True if os.environ.get("UWSGI_TEST_SYNC") else None,
)
if os.environ.get("UWSGI_TEST_EARLY"):  # the master delivers an event (its threads run) before forking
    alertkit.get_client().log({"eventmessage": "master started"}, "info")
    assert alertkit.get_client().flush(10)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/boom/"):
        raise RuntimeError(f"request {path} failed in worker")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


application = AlertkitMiddleware(application)
"""

REQUESTS = 6


@pytest.mark.slow
@pytest.mark.skipif(UWSGI is None, reason="uwsgi is in the test extra; it did not build here")
@pytest.mark.parametrize(
    ("extra", "mode"),
    [([], ""), ([], "early"), (["--lazy-apps"], ""), ([], "sync")],
    ids=["prefork", "prefork-master-sent-first", "lazy-apps", "synchronous"],
)
def test_uwsgi_workers_deliver_each_failing_request_once(
    tmp_path: Path, extra: list[str], mode: str
) -> None:
    """uWSGI forks its workers without Python's fork hooks (unless --py-call-uwsgi-fork-hooks):
    a master that delivered an event before forking left its pipeline's threads behind."""
    sync = mode == "sync"
    assert UWSGI is not None
    (tmp_path / "uwsgi_app.py").write_text(APP)
    port = free_port()
    log = tmp_path / "uwsgi.log"
    with ScriptedServer() as server:
        env = {**os.environ, "UWSGI_TEST_URL": f"{server.url}/v1/events"}
        if sync:
            env["UWSGI_TEST_SYNC"] = "1"
        if mode == "early":
            env["UWSGI_TEST_EARLY"] = "1"
        proc = start(
            [
                UWSGI,
                "--http-socket",
                f"127.0.0.1:{port}",
                "--master",
                "--processes",
                "2",
                "--die-on-term",
                "--need-app",
                "--home",
                sys.prefix,
                "--chdir",
                str(tmp_path),
                "--wsgi-file",
                str(tmp_path / "uwsgi_app.py"),
                *extra,
            ],
            tmp_path,
            env,
            log,
        )
        with running(proc, port, log):
            statuses = boom(port, REQUESTS)
            if sync:  # delivered before each response was sent
                assert len(server.requests) == REQUESTS
            wait_until(lambda: len(server.requests) >= REQUESTS + bool(mode))
        assert set(statuses) <= {500, -1}, statuses
        seen = failed_requests(list(server.requests))
    expected = {f"request /boom/{n} failed": 1 for n in range(REQUESTS)}
    if mode == "early":
        expected["master started"] = 1
    assert dict(seen) == expected
