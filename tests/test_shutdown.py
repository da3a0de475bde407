"""``Client.shutdown(t)``: within its budget, every accepted event accounted exactly once
(delivered, spooled or dropped with a reason), nothing dropped that the spool could take, no
alertkit thread left running, and one summary line however many events it gives up on."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

from alertkit import Client
from tests.standins.http import Reply, ScriptedServer


def http_client(url: str, **options: object) -> Client:
    return Client(
        api_key="k",
        backends=[f"{url}/v1/events"],
        sample_system=False,
        register_atexit=False,
        **options,  # type: ignore[arg-type]
    )


def send(client: Client, n: int) -> None:
    for i in range(n):
        client.send_event_async(client.create_new_app_event(event_message=f"event-{i}"))


def alertkit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("alertkit-")]


def wait_for_deliveries(client: Client, count: int) -> None:
    """Until delivery is under way (bounded), so that shutdown meets a backlog being worked off."""
    deadline = time.monotonic() + 10
    while client.stats()["http"]["delivered"] < count and time.monotonic() < deadline:
        time.sleep(0.01)


def totals(client: Client) -> tuple[int, int, int]:
    stats = client.stats()["http"]
    return stats["delivered"], stats["spooled"], stats["dropped"]


def test_with_a_spool_shutdown_spools_every_event_within_its_budget(tmp_path, capfd) -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        client = http_client(server.url, spool_path=tmp_path / "spool.db")
        send(client, 5000)
        start = time.monotonic()
        client.shutdown(0.5)
        elapsed = time.monotonic() - start
        assert totals(client) == (0, 5000, 0), "nothing dropped that the spool could take"
        assert elapsed < 0.5 + 0.5, "within the budget (plus a generous margin for a busy machine)"
        assert alertkit_threads() == [], "no alertkit thread runs after shutdown() returns"
        time.sleep(0.3)
        assert totals(client) == (0, 5000, 0), "nothing is counted after shutdown() returns"
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and "http: 5,000 spooled" in err


def test_every_event_ends_exactly_once_and_the_summary_adds_up(tmp_path, capfd) -> None:
    """A slow destination: some events go out within the budget, the rest are spooled."""
    with ScriptedServer([Reply(delay=0.05)]) as server:
        client = http_client(server.url, spool_path=tmp_path / "spool.db", batch_size=5)
        send(client, 2000)
        wait_for_deliveries(client, 20)
        client.shutdown(0.6)
        delivered, spooled, dropped = totals(client)
        assert delivered > 0 and spooled > 0, (delivered, spooled)
        assert delivered + spooled + dropped == 2000
        assert dropped == 0
        assert len(server.requests) * 5 >= delivered
        err = capfd.readouterr().err
        assert re.search(rf"http: {spooled:,} spooled \(", err), err
        assert f"{delivered:,} delivered" in err
        time.sleep(0.3)
        assert totals(client) == (delivered, spooled, dropped), "no late answer is counted"


def test_without_a_spool_every_event_is_delivered_or_dropped_once(capfd) -> None:
    with ScriptedServer([Reply(delay=0.05)]) as server:
        client = http_client(server.url, batch_size=5)
        send(client, 2000)
        wait_for_deliveries(client, 20)
        client.shutdown(0.6)
        delivered, spooled, dropped = totals(client)
        assert (delivered + dropped, spooled) == (2000, 0)
        assert delivered > 0 and dropped > 0
        assert f"http: {dropped:,} dropped" in capfd.readouterr().err
        assert alertkit_threads() == []


SILENT_CHILD = """
import sys, time
from alertkit import Client
client = Client(api_key="k", backends=[sys.argv[1] + "/v1/events"], sample_system=False,
                register_atexit=False)
for i in range(10_000):
    client.send_event_async(client.create_new_app_event(event_message=f"event-{i}"))
start = time.monotonic()
client.shutdown(2)
print(time.monotonic() - start, client.stats()["http"]["dropped"])
"""


def test_a_shutdown_that_drops_10000_events_prints_one_line_without_logging_configured() -> None:
    """No logging configured: Python's last-resort handler would print every warning."""
    with ScriptedServer([Reply(hang=True)]) as server:
        proc = subprocess.run(
            [sys.executable, "-c", SILENT_CHILD, server.url],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    elapsed, dropped = proc.stdout.split()
    assert int(dropped) == 10_000
    assert float(elapsed) < 2 + 0.5, "within the budget (plus a generous margin)"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("alertkit: not delivered: http: 10,000 dropped ("), lines


def test_events_the_policy_thread_did_not_reach_are_counted_once(tmp_path) -> None:
    """A slow processor of the application: the intake still holds events when the budget
    ends; those the spool has time for are spooled, the rest dropped, each counted once."""

    def slow(envelope):  # type: ignore[no-untyped-def]
        time.sleep(0.002)
        return envelope

    with ScriptedServer([Reply(hang=True)]) as server:
        client = http_client(server.url, spool_path=tmp_path / "spool.db", processors=[slow])
        send(client, 1000)
        start = time.monotonic()
        client.shutdown(0.5)
        elapsed = time.monotonic() - start
        delivered, spooled, dropped = totals(client)
        assert (delivered, spooled + dropped) == (0, 1000)
        assert spooled > 0
        assert elapsed < 0.5 + 0.5
        time.sleep(0.3)
        assert totals(client) == (delivered, spooled, dropped), "the policy thread has stopped"
        assert alertkit_threads() == []


LAST_MOMENT_CHILD = """
import sys
from alertkit import Client
for i in range(6):
    client = Client(api_key="k", backends=[sys.argv[1] + "/v1/events"], sample_system=False,
                    shutdown_timeout=2.0)
    client.send_event_async(client.create_new_app_event(event_message=f"event-{i}"))
"""


def test_events_sent_just_before_exit_by_several_clients_are_all_delivered() -> None:
    """The exit shutdown delivers them side by side; Python 3.12.0-3.12.1 start no thread in an
    atexit callback, so neither that shutdown nor a worker first needed then may rely on one."""
    with ScriptedServer([Reply()]) as server:
        proc = subprocess.run(
            [sys.executable, "-c", LAST_MOMENT_CHILD, server.url],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        accepted = {request.json()["eventMessage"] for request in server.requests}
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert accepted == {f"event-{i}" for i in range(6)}
