"""asyncio: a task exception nobody retrieved and whatever reaches the loop's exception handler
become error events; the previous handler still runs; asyncio's own loop and uvloop alike."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import alertkit
from alertkit import Client
from alertkit.capture import submit, uncaught
from alertkit.integrations import asyncio as alertkit_asyncio
from alertkit.testing import MemoryBackend

uvloop = pytest.importorskip("uvloop")  # in the test extra: never skipped on a fresh machine

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[Any]], Any]]:
    """Run a coroutine to completion on a fresh loop of each kind."""
    loop = LOOPS[request.param]()

    def runner(coro: Awaitable[Any]) -> Any:
        return loop.run_until_complete(asyncio.wait_for(coro, 10))

    yield runner
    loop.close()


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    made = Client(backends=[memory], sample_system=False, register_atexit=False)
    yield made
    made.shutdown(2.0)
    uncaught.uninstall()


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom("task failed, nobody awaited it")


async def forget_a_failing_task() -> None:
    task = asyncio.get_running_loop().create_task(fail())
    await asyncio.sleep(0)  # the task runs and fails
    await asyncio.sleep(0)
    del task  # nobody retrieves the exception: asyncio reports it when the task is collected
    gc.collect()


def test_a_never_retrieved_task_exception_is_an_error_event(
    run: Callable[[Awaitable[Any]], Any], client: Client, memory: MemoryBackend
) -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        alertkit_asyncio.install(client=client)
        await forget_a_failing_task()

    run(main())
    assert len(seen) == 1, "the previous handler was called"
    assert isinstance(seen[0]["exception"], Boom)
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert envelope.event.log_level == "error"
    assert envelope.event.event_message == "task failed, nobody awaited it"
    assert envelope.event.event_stacktrace
    assert envelope.details["mechanism"] == "asyncio"
    assert "never retrieved" in envelope.details["asyncio_message"]


def test_what_reaches_the_loop_handler_is_an_error_event_and_the_default_still_logs(
    run: Callable[[Awaitable[Any]], Any],
    client: Client,
    memory: MemoryBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        alertkit_asyncio.install(client=client)
        asyncio.get_running_loop().call_exception_handler({"message": "socket went away"})

    with caplog.at_level("ERROR", logger="asyncio"):
        run(main())
    assert "socket went away" in caplog.text, "asyncio's default handler still ran"
    assert client.flush(5)
    [envelope] = memory.envelopes
    assert (envelope.event.log_level, envelope.event.event_message) == ("error", "socket went away")


def test_installing_twice_reports_once_and_uninstall_restores_the_handler(
    run: Callable[[Awaitable[Any]], Any], client: Client, memory: MemoryBackend
) -> None:
    def previous(_loop: Any, _context: Any) -> None:
        return None

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(previous)
        alertkit_asyncio.install(client=client)
        alertkit_asyncio.install(client=client)
        installed = loop.get_exception_handler()
        loop.call_exception_handler({"message": "once"})
        alertkit_asyncio.uninstall()
        return installed, loop.get_exception_handler()

    installed, after = run(main())
    assert installed is not previous
    assert after is previous
    assert client.flush(5)
    assert len(memory.envelopes) == 1


def test_client_shutdown_gives_the_loop_its_handler_back(
    run: Callable[[Awaitable[Any]], Any], memory: MemoryBackend
) -> None:
    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        made = Client(backends=[memory], sample_system=False, register_atexit=False,
                      capture_uncaught={"asyncio"})  # fmt: skip
        during = loop.get_exception_handler()
        made.shutdown(2)
        return during, loop.get_exception_handler()

    during, after = run(main())
    assert during is not None, "a client made inside a running loop installs on it"
    assert after is None


def test_init_inside_a_running_loop_installs_on_it(
    run: Callable[[Awaitable[Any]], Any], memory: MemoryBackend
) -> None:
    previous = submit.replace_default(None)

    async def main() -> None:
        alertkit.init(backends=[memory], sample_system=False, register_atexit=False)
        await forget_a_failing_task()

    try:
        run(main())
        assert alertkit.get_client().flush(5)
        assert [e.event.event_message for e in memory.envelopes] == [
            "task failed, nobody awaited it"
        ]
    finally:
        current = submit.replace_default(previous)
        if current is not None:
            current.shutdown(2)  # type: ignore[attr-defined]
        uncaught.uninstall()


def test_install_outside_a_running_loop_needs_a_loop(client: Client) -> None:
    with pytest.raises(RuntimeError):
        alertkit_asyncio.install(client=client)


def test_a_task_whose_exception_is_awaited_and_handled_is_not_reported(
    run: Callable[[Awaitable[Any]], Any], client: Client, memory: MemoryBackend
) -> None:
    async def main() -> None:
        alertkit_asyncio.install(client=client)
        task = asyncio.get_running_loop().create_task(fail())
        with contextlib.suppress(Boom):  # handled by the application
            await task
        del task
        gc.collect()
        asyncio.get_running_loop().call_exception_handler(
            {"message": "cancelled", "exception": asyncio.CancelledError()}
        )

    run(main())
    assert client.flush(5)
    assert memory.envelopes == [], (
        "only what nobody handled is reported; cancelling is not an error"
    )
