"""Every client's end at interpreter exit: bounded by the shutdown budget, and never silent about
an event it could not settle in time."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from tests.standins.http import Reply, ScriptedServer

CHILD = """
import sys
from alertkit import Client

url, spool = sys.argv[1], sys.argv[2]
clients = [
    Client(api_key="k", backends=[url], spool_path=spool, sample_system=False, shutdown_timeout=1.0)
    for _ in range(2)
]
for index, client in enumerate(clients):
    client.send_event_async(client.create_new_app_event("error", event_message=f"event-{index}"))
print("ready", flush=True)
sys.stdin.readline()  # the test holds the spool's write lock from here on
"""


def test_events_still_being_spooled_when_the_exit_budget_runs_out_are_announced(tmp_path) -> None:
    """Two clients (shut down side by side at exit) give up on a hanging destination, and their
    spool writes wait behind another process's lock on the file: the exit ends within its budget
    anyway, and says how many events it leaves unsettled instead of letting them vanish."""
    spool = tmp_path / "spool.db"
    with ScriptedServer(lambda request: Reply(hang=True)) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, f"{server.url}/v1/events", str(spool)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            holder = sqlite3.connect(spool, timeout=5, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # every write of the child's waits for this one
            try:
                started = time.monotonic()
                _, stderr = child.communicate("go\n", timeout=30)
                took = time.monotonic() - started
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert child.returncode == 0, stderr
    assert took < 1.0 + 2.0, "the exit stays within its budget"
    assert "2 event(s) not settled when the exit's shutdown budget ran out" in stderr, stderr
