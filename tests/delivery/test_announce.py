"""Drops and failures are visible without asking: rate-limited WARNING lines, the destination's
last error in plain words, and one exit summary whose numbers add up."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap

from alertkit import Client, Dropped, RetryPolicy
from alertkit.delivery.announce import exit_summary
from alertkit.delivery.stats import BackendStats
from tests.standins.http import Reply, ScriptedServer, free_port
from tests.standins.pagerduty import KEY

GIVE_UP_FAST = RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.02, circuit_threshold=0)


class Clock:
    """A clock the test moves by hand, so the one-line-a-minute rule needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter with no logging configured: real stderr."""
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


# -- the announcer -------------------------------------------------------------------------------


def test_the_first_drop_is_announced_at_once_then_once_a_minute_with_the_count(caplog) -> None:
    clock = Clock()
    stats = BackendStats("local", clock=clock)
    with caplog.at_level(logging.WARNING, logger="alertkit.drops"):
        stats.add("dropped", reason="queue full")
        for _ in range(500):
            clock.now += 0.1  # 50 s of drops: held back
            stats.add("dropped", 10, reason="queue full")
        assert len(caplog.records) == 1
        clock.now += 11  # a minute after the first line
        stats.failed("HTTP 500 from h:80")
        stats.add("dropped", reason="gave up after 6 attempts; last error: HTTP 500 from h:80")
    lines = [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert lines[0].startswith("alertkit: local: dropped 1 event (queue full)")
    assert lines[1] == (
        "alertkit: local: dropped 5,001 events (5,000 queue full, 1 gave up after 6 attempts) "
        "in the last 61s; last error: HTTP 500 from h:80"
    )


def test_hushed_stats_announce_nothing_and_the_summary_still_counts_it_all(caplog) -> None:
    """At shutdown the drop lines stop; the exit summary tells every drop of the run."""
    clock = Clock()
    stats = BackendStats("pagerduty", clock=clock)
    with caplog.at_level(logging.WARNING, logger="alertkit.drops"):
        stats.add("rejected", reason="HTTP 400 from h:443: invalid event")
        stats.add("rejected", 2, reason="HTTP 400 from h:443: invalid event")  # held back
        stats.hush()
        clock.now += 3600
        stats.add("dropped", 4, reason="shutdown budget exhausted")
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    summary = exit_summary({"pagerduty": stats}, BackendStats("intake"), budget=2, elapsed=2)
    assert summary is not None
    assert "3 rejected" in summary and "4 dropped" in summary, summary


def test_causes_beyond_the_limit_are_summed_up_as_other_reasons() -> None:
    stats = BackendStats("http")
    for i in range(20):
        stats.add("rejected", reason=f"HTTP 400 from h:443: bad field {i}")
    causes = stats.causes()
    assert len(causes) == 9
    assert causes[("rejected", "other reasons")] == 12
    assert sum(causes.values()) == stats.count("rejected") == 20


# -- the exit summary ----------------------------------------------------------------------------


def test_the_summary_is_none_when_everything_was_delivered() -> None:
    stats = BackendStats("local")
    stats.add("delivered", 10)
    assert exit_summary({"local": stats}, BackendStats("intake"), budget=2, elapsed=0.1) is None


def test_the_summary_tells_budget_ran_out_from_not_retried_from_gave_up_from_rejected() -> None:
    stats = BackendStats("http")
    stats.add("delivered", 7)
    stats.failed("connection refused to 127.0.0.1:1")
    stats.add("dropped", 2, reason="shutdown budget exhausted")
    stats.add("dropped", 1, reason="gave up after 6 attempts; last error: connection refused")
    stats.add("rejected", 1, reason="HTTP 400 from 127.0.0.1:1: bad event")
    quick = exit_summary({"http": stats}, None, budget=2, elapsed=0.01)
    slow = exit_summary({"http": stats}, None, budget=2, elapsed=2.0)
    assert quick == (
        "alertkit: not delivered: http: 3 dropped (2 not retried: the next attempt was due after "
        "the shutdown budget of 2s, 1 gave up after 6 attempts), 1 rejected (HTTP 400 from "
        "127.0.0.1:1: bad event); 7 delivered (shutdown took 0.0s of its 2s budget)"
    )
    assert slow is not None and "2 the shutdown budget of 2s ran out" in slow
    assert "ran out" not in quick


# -- the destination's last error, in words ------------------------------------------------------


def test_a_closed_port_says_connection_refused_in_stats_and_summary(capfd) -> None:
    port = free_port()
    client = Client(
        backends=[f"pagerduty://{KEY}?endpoint=http://127.0.0.1:{port}/v2/enqueue"],
        retry=GIVE_UP_FAST,
        sample_system=False,
        register_atexit=False,
    )
    results = client.send_event(client.create_new_app_event("error"), timeout=10)
    stats = client.stats()["pagerduty"]
    client.shutdown(2)
    refused = f"connection refused to 127.0.0.1:{port}"
    assert results["pagerduty"] == Dropped(f"gave up after 2 attempts; last error: {refused}")
    assert stats["last_failure"] == refused
    err = capfd.readouterr().err
    assert (
        f"alertkit: not delivered: pagerduty: 1 dropped (gave up after 2 attempts); "
        f"last error: {refused}; 0 delivered" in err
    )
    assert "ran out" not in err


def test_an_http_error_names_the_status_and_the_host() -> None:
    with ScriptedServer([Reply(500, "database down")] * 2) as server:
        client = Client(
            api_key="test-key",
            backends=[f"{server.url}/v1/events"],
            retry=GIVE_UP_FAST,
            sample_system=False,
            register_atexit=False,
        )
        client.send_event(client.create_new_app_event("error"), timeout=10)
        stats = client.stats()["http"]
        client.shutdown(1)
    assert stats["last_failure"] == f"HTTP 500 from 127.0.0.1:{server.port}: database down"


# -- what a process with no logging configured shows on stderr -----------------------------------


def test_a_burst_to_local_warns_in_a_few_lines_and_the_summary_adds_up(tmp_path) -> None:
    """55,000 ``log.error`` calls in a burst: a few WARNING lines (through ``logging.lastResort``)
    naming the backend, the reason and the counts, and an exit summary matching ``stats()``."""
    result = python(
        f"""
        import json, logging
        from alertkit.capture.handler import AlertHandler

        # No breadcrumbs: each error would carry the 50 before it, and whether the policy thread
        # or the inbox is then the slower depends on the machine; this test needs the inbox.
        handler = AlertHandler(
            backends=["local://{tmp_path / "burst.db"}"], queue_size=2000, max_breadcrumbs=0
        )
        log = logging.getLogger("app")
        log.addHandler(handler)
        log.propagate = False
        for i in range(55_000):
            log.error("boom %d", i)
        handler.client.shutdown()
        print(json.dumps(handler.client.stats()["local"]))
        """
    )
    assert result.returncode == 0, result.stderr
    import json

    stats = json.loads(result.stdout)
    lines = result.stderr.splitlines()
    summaries = [line for line in lines if line.startswith("alertkit: not delivered: ")]
    warnings = [line for line in lines if line not in summaries]
    assert len(summaries) == 1
    assert 1 <= len(warnings) <= 6, lines
    assert all(
        re.match(r"alertkit: (local|intake): dropped [\d,]+ events? \(", w) for w in warnings
    )
    announced = {"local": 0, "intake": 0}
    for line in warnings:
        source, count = re.match(r"alertkit: (\w+): dropped ([\d,]+)", line).groups()
        announced[source] += int(count.replace(",", ""))
    summary = summaries[0]
    delivered = int(re.search(r"; ([\d,]+) delivered", summary).group(1).replace(",", ""))
    local = re.search(r"local: ([\d,]+) dropped \(", summary)
    intake = re.search(r"intake: ([\d,]+) dropped \(", summary)
    local_dropped = int(local.group(1).replace(",", "")) if local else 0
    intake_dropped = int(intake.group(1).replace(",", "")) if intake else 0
    assert delivered == stats["delivered"]
    assert local_dropped + intake_dropped == stats["dropped"]  # stats() counts intake drops too
    assert delivered + stats["dropped"] == 55_000
    # the lines came while the burst ran; the summary alone counts what shutdown dropped
    assert 0 < announced["local"] <= local_dropped and announced["intake"] <= intake_dropped


def test_a_shutdown_that_drops_10000_events_prints_a_few_lines_not_one_per_event() -> None:
    result = python(
        f"""
        from alertkit import Client, RetryPolicy

        client = Client(
            api_key="test-key",
            backends=["http://127.0.0.1:{free_port()}/v1/events"],
            retry=RetryPolicy(backoff=60, jitter=False),
            queue_size=20_000,
            sample_system=False,
        )
        for _ in range(10_000):
            client.log({{"eventmessage": "x"}}, "error", exc_info=False)
        client.shutdown(1)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) <= 4, lines[:10]
    assert "alertkit: not delivered: http: 10,000 dropped (" in lines[-1]
    assert "connection refused to 127.0.0.1:" in lines[-1]


def test_a_bad_backends_variable_is_one_config_error_and_nothing_at_exit() -> None:
    result = python(
        """
        from alertkit.capture.handler import AlertHandler

        AlertHandler()
        """,
        ALERTKIT_BACKENDS="bogus://nowhere",
    )
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert (
        result.stderr.rstrip()
        .splitlines()[-1]
        .startswith("alertkit.model.errors.ConfigError: unknown backend scheme 'bogus'")
    )
    assert "internal error" not in result.stderr


def test_a_bad_level_leaves_nothing_for_exit_either(tmp_path) -> None:
    result = python(
        f"""
        from alertkit.capture.handler import AlertHandler

        AlertHandler(level="NOPE", backends=["local://{tmp_path / "x.db"}"])
        """
    )
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "Unknown level: 'NOPE'" in result.stderr
