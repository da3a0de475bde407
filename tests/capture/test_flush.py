"""``alertkit.flush_after``: a short-lived function's exception and events are delivered before
it returns or re-raises, within its budget, and never reported twice."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import alertkit
from alertkit import Client
from alertkit.capture import submit
from alertkit.integrations.aws_lambda import wrap
from tests.standins.http import Reply, ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[Client]:
    made = Client(
        api_key="k", backends=[f"{server.url}/v1/events"], register_atexit=False, timeout=5
    )
    yield made
    made.shutdown(1)


def messages(server: ScriptedServer) -> list[str]:
    return [request.json()["eventMessage"] for request in list(server.requests)]


def test_the_default_client_delivers_a_cron_job_s_exception_before_it_propagates(server) -> None:
    client = alertkit.init(api_key="k", backends=[f"{server.url}/v1/events"], register_atexit=False)
    try:

        @alertkit.flush_after
        def nightly_job() -> None:
            raise KeyError("customer 42")

        with pytest.raises(KeyError):
            nightly_job()
        assert messages(server) == ["'customer 42'"]
        assert nightly_job.flush_stats.reported == 1  # type: ignore[attr-defined]
    finally:
        submit._default = None
        client.shutdown(1)


def test_events_of_a_successful_call_are_out_when_it_returns(server, client) -> None:
    @alertkit.flush_after(client=client, timeout=5)
    def job(n: int) -> int:
        for i in range(n):
            client.log({"eventmessage": f"row {i} skipped"}, "warning")
        return n

    assert job(5) == 5
    assert sorted(messages(server)) == [f"row {i} skipped" for i in range(5)]


def test_a_coroutine_function_is_flushed_too(server, client) -> None:
    @alertkit.flush_after(client=client)
    async def handler() -> None:
        raise RuntimeError("async failure")

    with pytest.raises(RuntimeError):
        asyncio.run(handler())
    assert messages(server) == ["async failure"]


def test_system_exit_is_not_an_error_report(server, client) -> None:
    @alertkit.flush_after(client=client)
    def script() -> None:
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        script()
    assert messages(server) == []


def test_nested_wrappers_report_the_exception_once(server, client) -> None:
    @wrap(client=client)
    @alertkit.flush_after(client=client)
    def handler(event: object, context: object) -> None:
        raise ValueError("once")

    with pytest.raises(ValueError):
        handler({}, None)
    assert messages(server) == ["once"]


def test_a_hanging_destination_costs_the_budget_and_is_counted() -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        client = Client(api_key="k", backends=[f"{server.url}/v1/events"], register_atexit=False)

        @alertkit.flush_after(client=client, timeout=0.3)
        def job() -> None:
            raise OSError("disk full")

        done = threading.Event()

        def run() -> None:
            with pytest.raises(OSError):
                job()
            done.set()

        threading.Thread(target=run, daemon=True).start()
        try:
            assert done.wait(10)
            assert job.flush_stats.late == 1  # type: ignore[attr-defined]
        finally:
            client.shutdown(0.3)


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        alertkit.flush_after(timeout=-1)


def test_the_log_line_of_an_exception_already_reported_is_not_a_second_event(
    server, client
) -> None:
    """Celery, cron wrappers and frameworks log the exception they just saw: reported once."""
    import logging

    logger = logging.getLogger("tests.flush.reported")
    logger.propagate = False
    handler = alertkit.AlertHandler(client=client)
    logger.addHandler(handler)

    @alertkit.flush_after(client=client)
    def job() -> None:
        raise LookupError("reported by the wrapper")

    try:
        try:
            job()
        except LookupError:
            logger.exception("job failed")  # the framework's own line for the same exception
        logger.error("an unrelated error")
        assert client.flush(5)
        assert sorted(messages(server)) == ["an unrelated error", "reported by the wrapper"]
    finally:
        logger.removeHandler(handler)
