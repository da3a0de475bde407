"""Reconfiguring logging (``dictConfig`` again, as Django, gunicorn and uvicorn do) while an
``AlertHandler``'s delivery is in flight: no hang, no stall, no lost event, a bounded exit.

Each scenario runs in a child process (a deadlock must fail the test, not hang it) against a real
HTTP stand-in in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from alertkit import Client
from tests.standins.http import Reply, Request, ScriptedServer

ROUNDS = 50
BUDGET = 1.0

CHILD = """
import json, logging, logging.config, sys, time

url, spool, rounds, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def configure():
    handler = {
        "class": "alertkit.AlertHandler", "level": "ERROR", "api_key": "k",
        "backends": [url], "sample_system": False, "shutdown_timeout": budget,
    }
    if spool != "-":
        handler["spool_path"] = spool
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"alerts": handler}, "root": {"handlers": ["alerts"], "level": "INFO"},
    })

configure()  # the application's start-up configuration
slowest = 0.0
for i in range(rounds):
    logging.getLogger("app").error("event-%d", i)
    start = time.monotonic()
    configure()  # a reload: the old handler is closed while its event is in flight
    slowest = max(slowest, time.monotonic() - start)
print(json.dumps({"slowest": slowest, "done": time.monotonic()}), flush=True)
"""


def run_child(url: str, spool: str, budget: float = BUDGET) -> tuple[dict[str, float], float]:
    """Run the reconfiguration loop; returns its report (with the child's stderr, where a drop
    would be announced) and the seconds it took to exit."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, f"{url}/v1/events", spool, str(ROUNDS), str(budget)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,  # the old code deadlocks here
    )
    exited = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    report["stderr"] = proc.stderr
    return report, exited - report["done"]


class Destination:
    """A server script that hangs while ``hanging`` and records the events it accepted."""

    def __init__(self, hanging: bool) -> None:
        self.hanging = hanging
        self.accepted: set[str] = set()

    def __call__(self, request: Request) -> Reply:
        if self.hanging:
            return Reply(hang=True)
        self.accepted.add(request.json()["eventMessage"])
        return Reply()


def test_50_reconfigurations_against_a_healthy_destination_lose_nothing() -> None:
    destination = Destination(hanging=False)
    with ScriptedServer(destination) as server:
        report, exit_time = run_child(server.url, "-")
        assert destination.accepted == {f"event-{i}" for i in range(ROUNDS)}
    assert report["slowest"] < 0.5, "dictConfig never waits for delivery"
    assert exit_time < BUDGET + 2.0, "the exit shutdown stays within its budget"


def test_50_reconfigurations_against_a_hanging_destination_spool_everything(tmp_path) -> None:
    """50 retired clients spool what they hold at exit: the budget (3 s here) is what 50 SQLite
    writers need on a loaded CI machine, where 1 s once left two events dropped (announced)."""
    spool = tmp_path / "spool.db"
    destination = Destination(hanging=True)
    budget = 3.0
    with ScriptedServer(destination) as server:
        report, exit_time = run_child(server.url, str(spool), budget)
        assert report["slowest"] < 0.5, "dictConfig never waits for a hanging destination"
        assert exit_time < budget + 2.0, "the exit shutdown stays within its budget"
        assert destination.accepted == set(), "nothing went through"
        destination.hanging = False  # the destination recovers: the spool replays everything
        replay(server.url, spool)
        missing = {f"event-{i}" for i in range(ROUNDS)} - destination.accepted
        assert not missing, (sorted(missing), report["stderr"])


def replay(url: str, spool: Path) -> None:
    client = Client(
        api_key="k",
        backends=[f"{url}/v1/events"],
        spool_path=spool,
        sample_system=False,
        register_atexit=False,
    )
    deadline = time.monotonic() + 20
    while client.stats()["http"]["delivered"] < ROUNDS and time.monotonic() < deadline:
        time.sleep(0.05)
    client.shutdown(2)
