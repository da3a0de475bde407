"""gunicorn: workers forked after ``alertkit.init`` (``--preload``) or importing the app after the
fork deliver their own events, for the sync and gthread workers, also when ``--max-requests``
recycles them; each failing request is reported exactly once.

A tiny WSGI app file, a real gunicorn started by the test on 127.0.0.1 and stopped by its PID,
the events counted at a stand-in destination.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integrations.processes import (
    boom,
    failed_requests,
    get,
    running,
    start,
    wait_until,
)
from tests.standins.http import ScriptedServer, free_port

APP = r"""
import os

import alertkit
from alertkit.integrations.wsgi import AlertkitMiddleware

alertkit.init(api_key="k", backends=[os.environ["GUNICORN_TEST_URL"]], shutdown_timeout=5)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/boom/"):
        raise RuntimeError(f"request {path} failed in worker")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


app = AlertkitMiddleware(application)
"""

REQUESTS = 8


@pytest.mark.slow
@pytest.mark.parametrize(
    ("worker", "extra"),
    [
        ("sync", ["--preload"]),
        ("gthread", ["--preload", "--threads", "4"]),
        ("sync", ["--max-requests", "2"]),  # no preload: each worker imports the app itself
        ("gthread", ["--threads", "2", "--max-requests", "2"]),
    ],
)
def test_each_failing_request_is_delivered_once_by_its_worker(
    tmp_path: Path, worker: str, extra: list[str]
) -> None:
    (tmp_path / "wsgi_app.py").write_text(APP)
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with ScriptedServer() as server:
        env = {
            **os.environ,
            "GUNICORN_TEST_URL": f"{server.url}/v1/events",
            "PYTHONPATH": str(tmp_path),
            "HOME": str(tmp_path),  # recent gunicorn puts its control socket in ~/.gunicorn
        }
        proc = start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--worker-class",
                worker,
                "--graceful-timeout",
                "10",
                *extra,
                "wsgi_app:app",
            ],
            tmp_path,
            env,
            log,
        )
        with running(proc, port, log):
            statuses = boom(port, REQUESTS)
            assert get(f"http://127.0.0.1:{port}/fine") == 200
            # Delivered by the running workers, without waiting for their exit.
            wait_until(lambda: len(server.requests) >= REQUESTS)
        assert statuses == [500] * REQUESTS
        seen = failed_requests(list(server.requests))
    expected = {f"request /boom/{n} failed": 1 for n in range(REQUESTS)}
    assert dict(seen) == expected, log.read_text()[-3000:]
