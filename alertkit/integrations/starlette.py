"""Starlette and FastAPI: ``init_app(app)``, the ASGI middleware plus the app's exception handlers.

::

    from fastapi import FastAPI
    from alertkit.integrations.starlette import init_app   # or alertkit.integrations.fastapi

    app = FastAPI()
    init_app(app)                      # failed_request_status_codes=range(500, 600) by default

The middleware (:class:`alertkit.integrations.asgi.AlertkitMiddleware`) sees an exception that
escapes the routes, and the status of every response. An exception handler of the app's own
(``@app.exception_handler(PaymentError)``) runs inside it, though: the middleware would see a 500
without its exception. ``init_app`` therefore wraps the app's exception handlers, present and
future, so that each tells the request which exception it is answering; a request whose status is
one of ``failed_request_status_codes`` then reports that exception, with its traceback, once. An
``HTTPException`` with a 4xx status is answered by such a handler too, and is not reported unless
its status is listed.

Starlette is not imported here: the app is only given a middleware and a wrapping dict.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from alertkit.capture.client import Client
from alertkit.integrations import check_status_codes, note_exception
from alertkit.integrations.asgi import AlertkitMiddleware

__all__ = ["init_app"]

Handler = Callable[[Any, Exception], Any]


def _is_async(handler: Any) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


def reporting(handler: Handler) -> Handler:
    """``handler``, first telling the current request which exception it answers."""
    if getattr(handler, "__alertkit_reporting__", False):
        return handler
    wrapper: Handler
    if _is_async(handler):

        async def wrapper(request: Any, exc: Exception) -> Any:
            note_exception(exc)
            result: Awaitable[Any] = handler(request, exc)
            return await result

    else:  # Starlette runs a sync handler in its thread pool, in a copy of the request's context

        def wrapper(request: Any, exc: Exception) -> Any:
            note_exception(exc)
            return handler(request, exc)

    functools.update_wrapper(wrapper, handler)
    setattr(wrapper, "__alertkit_reporting__", True)  # noqa: B010 (a function attribute)
    return wrapper


class ReportingHandlers(dict[Any, Handler]):
    """The app's ``exception_handlers``, every handler put in wrapped by :func:`reporting`."""

    def __setitem__(self, key: Any, handler: Handler) -> None:
        super().__setitem__(key, reporting(handler))

    def setdefault(self, key: Any, handler: Handler) -> Handler:
        if key not in self:
            self[key] = handler
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, handler in dict(*args, **kwargs).items():
            self[key] = handler


def init_app(
    app: Any,
    client: Client | None = None,
    escalate_from: str | int = "error",
    failed_request_status_codes: Iterable[int] | None = None,
) -> Any:
    """Report the app's failing requests: add the middleware and wrap its exception handlers.

    Call it once, before the app serves its first request (Starlette refuses middleware added
    later). A second call changes nothing.

    Args:
        app: a ``starlette.applications.Starlette`` or ``fastapi.FastAPI`` app.
        client: the client to report through; default ``alertkit.get_client()`` at request time.
        escalate_from: the request level from which the request log is escalated.
        failed_request_status_codes: the statuses that make a request an error (default: every
            5xx). ``HTTPException`` 4xx are reported only when their status is listed.

    Returns:
        The app.

    Raises:
        ValueError: unknown ``escalate_from`` or a bad status code.
        TypeError: ``app`` is not a Starlette app.
    """
    codes = check_status_codes(failed_request_status_codes)
    handlers = getattr(app, "exception_handlers", None)
    if not isinstance(handlers, dict) or not hasattr(app, "add_middleware"):
        raise TypeError(f"init_app: expected a Starlette or FastAPI app, got {type(app).__name__}")
    if isinstance(handlers, ReportingHandlers):
        return app
    AlertkitMiddleware(app, client, escalate_from, codes)  # check the options before changing app
    app.add_middleware(
        AlertkitMiddleware,
        client=client,
        escalate_from=escalate_from,
        failed_request_status_codes=codes,
    )
    wrapped = ReportingHandlers()
    wrapped.update(handlers)
    app.exception_handlers = wrapped
    return app
