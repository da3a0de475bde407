"""ASGI middleware (FastAPI, Starlette, any ASGI 3 app): a scope per HTTP request.

::

    from fastapi import FastAPI
    from alertkit.integrations.asgi import AlertkitMiddleware

    app = FastAPI()
    app.add_middleware(AlertkitMiddleware, escalate_from="error")

For FastAPI and Starlette prefer :func:`alertkit.integrations.starlette.init_app`, which adds this
middleware and also reports the exceptions the app's own exception handlers turn into 500s.
See :mod:`alertkit.integrations` for what happens per request. Only ``http`` requests get a scope;
``lifespan`` and ``websocket`` connections pass through untouched. The transaction is the path
template of the route that served the request (``/items/{item_id}``), when the app's router says
it (Starlette and FastAPI put it in the ASGI scope as ``route``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from alertkit.capture.client import Client
from alertkit.capture.current import running_task
from alertkit.integrations import RequestHeaders, RequestTracker

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


def _headers(scope: ASGIScope) -> Iterator[tuple[str, str]]:
    for name, value in scope.get("headers") or ():
        yield bytes(name).decode("latin-1"), bytes(value).decode("latin-1")


def describe(scope: ASGIScope) -> tuple[str | None, RequestHeaders]:
    """The URL and headers of an ASGI request, read when its alertkit scope is made."""
    return request_url(scope), RequestHeaders(_headers, scope)


def route_name(scope: ASGIScope) -> str | None:
    """The path template of the route that served the request, else its endpoint's name."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    endpoint = scope.get("endpoint")
    name = getattr(endpoint, "__qualname__", None) or getattr(endpoint, "__name__", None)
    return name if isinstance(name, str) else None


class AlertkitMiddleware:
    """Wrap an ASGI app so each HTTP request runs in its own alertkit scope.

    Args:
        app: the ASGI application.
        client: the client to report through; default ``alertkit.get_client()`` at request time
            (so ``alertkit.init()`` may run after the app is built).
        escalate_from: the request level (``"warning"``, ``"error"``, ``"fatal"``) from which the
            request log is escalated.
        failed_request_status_codes: the response statuses that make the request an error, so
            that it is reported (default: every 5xx; an ``HTTPException`` 404 is not reported
            unless 404 is listed).

    Raises:
        ValueError: unknown ``escalate_from``, or a status code outside 100-599.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client | None = None,
        escalate_from: str | int = "error",
        failed_request_status_codes: Iterable[int] | None = None,
    ) -> None:
        self.app = app
        # The route is read when needed: the router fills scope["route"] in.
        self.tracker = RequestTracker(
            client, escalate_from, failed_request_status_codes, describe=describe, route=route_name
        )

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method") or "GET")
        path = str(scope.get("path") or "/")
        request = self.tracker.begin(method, path, scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        request.task = running_task()  # this task keeps the request's own breadcrumbs
        status: int | None = None

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status") or 0) or None
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException as exc:
            self.tracker.finish(request, status, exc)
            raise
        self.tracker.finish(request, status, None)
