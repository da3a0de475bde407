"""asyncio: exceptions nobody awaited, and whatever reaches the loop's exception handler.

A task that fails and is never awaited keeps its exception to itself until the task is collected;
asyncio then passes it, like every error it cannot give anyone else (a failing callback, a
``loop.call_exception_handler`` call), to the loop's exception handler. :func:`install` puts
alertkit's handler in front of the one the loop had: each such error becomes an ``error`` event,
then the previous handler (or asyncio's default, which logs it) runs as before. It works with any
loop that implements ``set_exception_handler`` (asyncio's own, uvloop).

``alertkit.init()`` called inside a running loop installs it on that loop. A program that runs
``asyncio.run(main())`` and calls ``init`` before it starts the loop installs it from ``main``::

    async def main() -> None:
        alertkit.integrations.asyncio.install()
        ...

    alertkit.init(backends=[...])
    asyncio.run(main())
"""

from __future__ import annotations

import asyncio

from alertkit.capture import uncaught
from alertkit.capture.client import Client

__all__ = ["install", "uninstall"]


def install(loop: asyncio.AbstractEventLoop | None = None, client: Client | None = None) -> None:
    """Report ``loop``'s unhandled errors (default: the running loop) through ``client``
    (default: ``alertkit.get_client()``). Installing twice changes nothing.

    Raises:
        RuntimeError: ``loop`` is None and no loop is running in this thread.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    if client is None:
        from alertkit.capture.api import get_client

        client = get_client()
    uncaught.install(client, {"asyncio"})
    uncaught.install_loop(loop)


def uninstall(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Give ``loop`` (default: the running loop) back the exception handler it had before."""
    if loop is None:
        loop = asyncio.get_running_loop()
    uncaught.uninstall_loop(loop)
