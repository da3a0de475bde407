"""Forking at any moment is safe: a process that forks right after its first events (gunicorn
``--preload``, multiprocessing, Celery's prefork pool) gets children that deliver their own events
and exit within their budget, whatever a pipeline thread held at the fork.

A fresh driver process forks one short-lived application per round; each builds a client, sends
a stream of events from a thread, forks at a random moment in its first 100 ms of event flow, and
its child delivers one event of its own. In the cold rounds the driver has imported alertkit only,
so every lazy import is still ahead of each application (an import in progress at the fork leaves
its lock held in the child); in the warm rounds urllib3 and psutil are already imported (faster,
so more rounds fit in the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.standins.http import Reply, Request, ScriptedServer

COLD, WARM = 50, 150

DRIVER = r"""
import json, os, random, sys, threading, time
import alertkit

url, rounds, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if sys.argv[4] == "warm":
    import psutil, urllib3
CHILD_BUDGET = 10.0  # far above a healthy child's few milliseconds: only a deadlock reaches it

def wait(pid, budget):
    end = time.monotonic() + budget
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

def application(n):
    client = alertkit.Client(api_key="k", backends=[url], register_atexit=False)
    stop = threading.Event()
    def flow():
        i = 0
        while not stop.is_set():
            client.send_event_async(client.create_new_app_event(event_message=f"app-{n}-{i}"))
            i += 1
            time.sleep(0.001)
    threading.Thread(target=flow, daemon=True).start()
    time.sleep(random.uniform(0, 0.1))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            event = client.create_new_app_event(event_message=f"child-{n}")
            result = client.send_event(event, timeout=5)
            client.shutdown(1)
            code = 0 if type(result.get("http")).__name__ == "Delivered" else 1
        finally:
            os._exit(code)
    code = wait(pid, CHILD_BUDGET)
    stop.set()
    client.shutdown(1)
    return code

results = {}
start = time.monotonic()
for n in range(first, first + rounds):
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = application(n)
        finally:
            os._exit(code if isinstance(code, int) else 3)
    code = wait(pid, 30)
    results[str(code)] = results.get(str(code), 0) + 1
print(json.dumps({"results": results, "seconds": time.monotonic() - start}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_200_forks_at_random_moments_of_the_first_event_flow() -> None:
    children: set[str] = set()

    def record(request: Request) -> Reply:
        message = request.json()["eventMessage"]
        if message.startswith("child-"):
            children.add(message)
        return Reply()

    with ScriptedServer(record) as server:
        reports = [
            drive(f"{server.url}/v1/events", COLD, 0, "cold"),
            drive(f"{server.url}/v1/events", WARM, COLD, "warm"),
        ]
    assert [r["results"] for r in reports] == [{"0": COLD}, {"0": WARM}], reports
    assert children == {f"child-{n}" for n in range(COLD + WARM)}


def drive(url: str, rounds: int, first: int, mode: str) -> dict[str, object]:
    """Run ``rounds`` applications in a fresh driver; returns its exit codes and duration."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, url, str(rounds), str(first), mode],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_pipeline_thread_holds_every_lock_delivers() -> None:
    """The deterministic worst case of the random forks above: at the fork, another thread holds
    the settlement lock, the backend's counters' lock, the transport's and the sampler's."""
    import threading
    import time

    from alertkit import Client, Delivered
    from alertkit.delivery import worker as worker_module

    with ScriptedServer() as server:
        client = Client(api_key="k", backends=[f"{server.url}/v1/events"], register_atexit=False)
        client.send_event(client.create_new_app_event(event_message="parent"), timeout=5)
        worker = client.pipeline.workers[0]
        locks = [
            worker_module._SETTLE_LOCK,
            worker.stats._lock,
            client.backends[0]._transport._lock,  # type: ignore[attr-defined]
            client.events.sampler._lock,  # type: ignore[union-attr]
        ]
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait(30)
            for lock in locks:
                lock.release()

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                result = client.send_event(
                    client.create_new_app_event(event_message="child"), timeout=5
                )
                client.shutdown(1)
                code = 0 if isinstance(result.get("http"), Delivered) else 1
            finally:
                os._exit(code)
        release.set()
        holder.join(5)
        deadline = time.monotonic() + 20
        status = None
        while status is None and time.monotonic() < deadline:
            done, raw = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(raw) if done else None
            time.sleep(0.01)
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        client.shutdown(1)
        assert status == 0, "the child delivered its event and exited"
        assert sorted(r.json()["eventMessage"] for r in server.requests) == ["child", "parent"]
