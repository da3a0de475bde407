"""ASGI middleware (FastAPI, Starlette, any ASGI 3 app): a scope per HTTP request.

::

    from fastapi import FastAPI
    from alertkit.integrations.asgi import AlertkitMiddleware

    app = FastAPI()
    app.add_middleware(AlertkitMiddleware, escalate_from="error")

See :mod:`alertkit.integrations` for what happens per request. Only ``http`` requests get a scope;
``lifespan`` and ``websocket`` connections pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from alertkit.capture.client import Client
from alertkit.capture.trace import continue_trace
from alertkit.integrations import RequestTracker

__all__ = ["AlertkitMiddleware"]

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]


def request_url(scope: ASGIScope) -> str:
    """``scheme://host/path`` of the request, without the query string (it may carry secrets)."""
    path = str(scope.get("path") or "/")
    host = None
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value.decode("latin-1")
            break
    if host is None and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}" if port is not None else str(server_host)
    if host is None:
        return path
    return f"{scope.get('scheme') or 'http'}://{host}{path}"


class AlertkitMiddleware:
    """Wrap an ASGI app so each HTTP request runs in its own alertkit scope.

    Args:
        app: the ASGI application.
        client: the client to report through; default ``alertkit.get_client()`` at request time
            (so ``alertkit.init()`` may run after the app is built).
        escalate_from: the request level (``"warning"``, ``"error"``, ``"fatal"``) from which the
            request log is escalated.

    Raises:
        ValueError: unknown ``escalate_from``.
    """

    def __init__(
        self, app: ASGIApp, client: Client | None = None, escalate_from: str | int = "error"
    ) -> None:
        self.app = app
        self.tracker = RequestTracker(client, escalate_from)

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method") or "GET")
        path = str(scope.get("path") or "/")
        alert_scope = self.tracker.begin(method, path, request_url(scope))
        if alert_scope is None:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        continue_trace(alert_scope, [value for name, value in headers if name == b"traceparent"])
        status: int | None = None

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status") or 0) or None
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException as exc:
            self.tracker.finish(alert_scope, method, path, status, exc)
            raise
        self.tracker.finish(alert_scope, method, path, status, None)
