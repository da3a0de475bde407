"""Events logged in a ``multiprocessing`` child are delivered before the child exits, with no
setup beyond the usual ``logging`` handler: for every start method and for a ``Pool`` whose
workers are recycled (``maxtasksperchild``), though none of them runs ``atexit`` in the child.

A driver script run in a fresh interpreter sets logging up at module level (a ``spawn`` or
``forkserver`` child imports it again and gets a client of its own; a ``fork`` child inherits
the parent's), starts the children and exits; the events are counted at a stand-in server.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import subprocess
import sys
import threading

import pytest

from tests.standins.http import Reply, Request, ScriptedServer

CHILDREN, ERRORS = 8, 100

DRIVER = r"""
import json, logging, multiprocessing, os, sys, time
import alertkit

URL = os.environ["DRIVER_URL"]
client = alertkit.init(
    api_key="k", backends=[URL], shutdown_timeout=float(os.environ.get("DRIVER_BUDGET", "10"))
)
log = logging.getLogger("child")
log.addHandler(alertkit.AlertHandler(client=client))
log.propagate = False

def child(n):
    for i in range(int(os.environ["DRIVER_ERRORS"])):
        log.error("child %d error %d", n, i)
    return os.getpid()

if __name__ == "__main__":
    method, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    context = multiprocessing.get_context(method)
    start = time.monotonic()
    if mode == "process":
        procs = [context.Process(target=child, args=(n,)) for n in range(count)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(float(os.environ.get("DRIVER_JOIN", "60")))
        codes = [proc.exitcode for proc in procs]
        pids = len(procs)
    else:  # a pool whose every worker exits after one task
        pool = context.Pool(2, maxtasksperchild=1)
        pids = len(set(pool.map(child, range(count), chunksize=1)))
        pool.close()
        pool.join()
        codes = [0]
    print(json.dumps({"codes": codes, "pids": pids, "seconds": time.monotonic() - start}))
    sys.stdout.flush()
    os._exit(0)  # the parent itself sends nothing: every event counted came from a child
"""


def run_driver(tmp_path, url: str, method: str, mode: str, **extra_env: str) -> dict[str, object]:
    """Run the driver (children log, the parent exits without delivering anything)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {
        **_environ(),
        "DRIVER_URL": url,
        "DRIVER_ERRORS": str(ERRORS),
        **extra_env,
    }
    proc = subprocess.run(
        [sys.executable, str(script), method, mode, str(CHILDREN)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return report


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


class Counter:
    """Counts each event message the stand-in receives."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            self.seen[request.json()["eventMessage"]] += 1
        return Reply()

    def expected(self) -> set[str]:
        return {f"child {n} error {i}" for n in range(CHILDREN) for i in range(ERRORS)}


METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["process", "pool"])
@pytest.mark.parametrize("method", METHODS)
def test_eight_children_each_log_100_errors_and_exit_800_delivered(tmp_path, method, mode) -> None:
    """``process``: 8 ``Process`` children; ``pool``: a ``Pool`` of 2 whose workers retire after
    each task (``maxtasksperchild=1``), 8 tasks."""
    counter = Counter()
    with ScriptedServer(counter) as server:
        report = run_driver(tmp_path, f"{server.url}/v1/events", method, mode)
    if mode == "process":
        assert report["codes"] == [0] * CHILDREN
    else:
        assert report["pids"] == CHILDREN  # a new worker process per task
    assert set(counter.seen) == counter.expected()
    assert sum(counter.seen.values()) == CHILDREN * ERRORS  # each exactly once


@pytest.mark.slow
def test_a_child_whose_destination_hangs_exits_within_its_shutdown_budget(tmp_path) -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        report = run_driver(
            tmp_path,
            f"{server.url}/v1/events",
            METHODS[0],
            "process",
            DRIVER_BUDGET="1",
            DRIVER_JOIN="20",  # a child still running then has an exit code of None
        )
        server.release.set()
    assert report["codes"] == [0] * CHILDREN  # each gave up after its 1 s budget and exited
