"""Every client's end at interpreter exit: bounded by the shutdown budget, and never silent about
an event it could not settle in time."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.standins.http import Reply, ScriptedServer

BUDGET = 1.0
#: Interpreter start and exit on a loaded machine, beyond the budget.
ALLOWANCE = 2.0
#: Python 3.12.0 and 3.12.1 start no thread at exit: clients are shut down one after another on
#: the exiting thread itself (``lifetime._shutdown_in_turn``).
NO_THREADS_AT_EXIT = sys.version_info[:3] in ((3, 12, 0), (3, 12, 1))

HOOKED = """
import sys, time
from alertkit import Client

url, budget = sys.argv[1], float(sys.argv[2])
clients = [
    Client(api_key="k", backends=[url], sample_system=False, shutdown_timeout=budget,
           on_drop=lambda envelope, reason: time.sleep(4))
    for _ in range(2)
]
for index, client in enumerate(clients):
    client.send_event_async(client.create_new_app_event("error", event_message=f"event-{index}"))
time.sleep(0.3)  # both requests hang at the destination
"""


def test_events_unsettled_when_the_exit_stops_waiting_are_announced() -> None:
    """An ``on_drop`` hook that takes longer than the budget holds each client's give-up: the exit
    stops waiting at its budget anyway, and says how many events it leaves unsettled rather than
    letting them vanish. (Where no thread can start at exit, the exiting thread runs the hook
    itself and so waits for it: each event then ends dropped and announced.)"""
    with ScriptedServer(lambda request: Reply(hang=True)) as server:
        started = time.monotonic()
        child = subprocess.run(
            [sys.executable, "-c", HOOKED, f"{server.url}/v1/events", str(BUDGET)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
    assert child.returncode == 0, child.stderr
    if NO_THREADS_AT_EXIT:
        summaries = [
            s for s in child.stderr.splitlines() if s.startswith("alertkit: not delivered")
        ]
        assert len(summaries) == 2 and all("1 dropped" in line for line in summaries), child.stderr
        return
    assert took < 0.3 + BUDGET + ALLOWANCE, "the exit stays within its budget"
    assert "alertkit: 2 event(s) not settled when the exit's shutdown budget ran out" in (
        child.stderr
    ), child.stderr
