"""Celery: a real worker (prefork pool, ``--max-tasks-per-child=1``, the filesystem broker) started
by the test reports every failing task exactly once, with its name, id, retries and scrubbed
arguments; retried tasks only when they finally fail; none lost when a pool process is recycled
(each ends with ``os._exit`` right after its one task).

The events go to the local inbox (which keeps the details) and to a stand-in HTTP destination
that takes 1.5 s per event: a recycled pool process gives its threads only about a second
before ``os._exit``, so without the flush at ``worker_process_shutdown`` these would be lost.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alertkit.backends.local import read_events
from alertkit.model.event import Envelope
from tests.integrations.processes import stop
from tests.standins.http import Reply, ScriptedServer

APP = r"""
import os
from pathlib import Path

from celery import Celery

import alertkit
from alertkit.integrations import celery as alertkit_celery

HERE = Path(os.environ["CELERY_TEST_DIR"])
alertkit.init(
    api_key="k",
    backends=[f"local://{HERE / 'events.db'}", os.environ["CELERY_TEST_URL"]],
    shutdown_timeout=5,
)
alertkit_celery.install()

app = Celery("celery_app", broker="filesystem://")
app.conf.update(
    broker_transport_options={
        "data_folder_in": str(HERE / "queue"),
        "data_folder_out": str(HERE / "queue"),
        "control_folder": str(HERE / "control"),
    },
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task
def fail(n, password=None):
    raise ValueError(f"task {n} failed")


@app.task
def succeed(n):
    return n


@app.task(bind=True, max_retries=2)
def flaky(self, n):
    raise self.retry(exc=RuntimeError(f"flaky {n} gave up"), countdown=0)


@app.task(bind=True, max_retries=3)
def recovers(self, n):
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError(f"recovers {n} hiccup"), countdown=0)
    return n
"""

FAILING, FLAKY = 6, 2


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "celery_app.py").write_text(APP)
    for folder in ("queue", "control"):
        (tmp_path / folder).mkdir()
    return tmp_path


def environ(workdir: Path, url: str = "http://127.0.0.1:9/v1/events") -> dict[str, str]:
    return {
        **os.environ,
        "CELERY_TEST_DIR": str(workdir),
        "CELERY_TEST_URL": url,
        "PYTHONPATH": str(workdir),
    }


def send_tasks(workdir: Path) -> dict[str, str]:
    """Queue the tasks from a separate producer process; returns failing task id -> message."""
    producer = r"""
import json, sys
from celery_app import fail, flaky, recovers, succeed
ids = {}
for n in range(int(sys.argv[1])):
    ids[fail.apply_async((n,), {"password": "hunter2"}).id] = f"task {n} failed"
    succeed.delay(n)
for n in range(int(sys.argv[2])):
    ids[flaky.delay(n).id] = f"flaky {n} gave up"
    recovers.delay(n)
print(json.dumps(ids))
"""
    proc = subprocess.run(
        [sys.executable, "-c", producer, str(FAILING), str(FLAKY)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
        env=environ(workdir),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids: dict[str, str] = json.loads(proc.stdout.splitlines()[-1])
    return ids


def start_worker(workdir: Path, url: str) -> subprocess.Popen[bytes]:
    log = (workdir / "worker.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--max-tasks-per-child=1",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
        ],
        cwd=workdir,
        env=environ(workdir, url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def inbox(workdir: Path) -> list[dict[str, object]]:
    return read_events(workdir / "events.db", limit=1000)


@pytest.mark.slow
def test_a_real_worker_reports_each_failing_task_exactly_once(workdir: Path) -> None:
    failing = send_tasks(workdir)
    with ScriptedServer([Reply(delay=1.5)]) as server:
        worker = start_worker(workdir, f"{server.url}/v1/events")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(server.requests) < len(failing):
                assert worker.poll() is None, (workdir / "worker.log").read_text()[-3000:]
                time.sleep(0.25)
            time.sleep(2.0)  # a duplicate, had there been one, would arrive by now
        finally:
            stop(worker)
        delivered = collections.Counter(r.json()["eventMessage"] for r in list(server.requests))
    assert delivered == dict.fromkeys(failing.values(), 1)
    events = inbox(workdir)
    counts = collections.Counter(str(e["details"]["celery.task_id"]) for e in events)  # type: ignore[index]
    log_tail = (workdir / "worker.log").read_text()[-3000:]
    assert counts == dict.fromkeys(failing, 1), log_tail  # each failing task once, nothing else
    by_id = {str(e["details"]["celery.task_id"]): e for e in events}  # type: ignore[index]
    for task_id, message in failing.items():
        event = by_id[task_id]
        assert event["message"] == message
        details: dict[str, object] = event["details"]  # type: ignore[assignment]
        if message.startswith("task"):
            assert details["celery.task"] == "celery_app.fail"
            assert details["celery.retries"] == 0
            assert details["celery.kwargs"] != {"password": "hunter2"}  # scrubbed
            assert "hunter2" not in str(details)
        else:
            assert details["celery.task"] == "celery_app.flaky"
            assert details["celery.retries"] == 2  # reported once, at its final failure


@pytest.fixture
def eager(monkeypatch):
    """A Celery app whose tasks run in this process (``task.apply``: the same trace and signals
    as in a worker), and an alertkit client catching what ``install()`` reports."""
    from celery import Celery

    from alertkit import Client
    from alertkit.integrations import celery as alertkit_celery
    from alertkit.testing import MemoryBackend

    for name in ("client", "report_retries", "send_args"):  # install() leaves them set
        monkeypatch.setattr(alertkit_celery._options, name, getattr(alertkit_celery._options, name))
    backend = MemoryBackend()
    client = Client(backends=[backend], register_atexit=False, sample_system=False)
    app = Celery("eager", broker="memory://")

    @app.task(bind=True, max_retries=2)
    def flaky(self, n, token=None):
        raise self.retry(exc=RuntimeError(f"flaky {n}"), countdown=0)

    def run(**options: bool) -> list[Envelope]:
        alertkit_celery.install(client=client, **options)
        assert flaky.apply((1,), {"token": "s3cr3t"}).state == "FAILURE"
        assert client.flush(5)
        return list(backend.envelopes)

    yield run
    client.shutdown(1)


def test_a_retried_task_is_reported_once_when_its_retries_run_out(eager) -> None:
    [envelope] = eager()
    assert envelope.event.event_message == "flaky 1"
    assert envelope.details["celery.retries"] == 2
    assert envelope.details["celery.kwargs"] == {"token": "[Filtered]"}


def test_report_retries_adds_a_warning_per_retry(eager) -> None:
    envelopes = eager(report_retries=True)
    kinds = [(e.event.log_level, e.details["celery.retries"]) for e in envelopes]
    assert kinds == [("warning", 0), ("warning", 1), ("error", 2)]


def test_send_args_false_leaves_the_arguments_out(eager) -> None:
    [envelope] = eager(send_args=False)
    assert "celery.args" not in envelope.details
    assert "celery.kwargs" not in envelope.details
