"""Flask: ``init_app(app)``, one line.

::

    import alertkit
    from flask import Flask
    from alertkit.integrations.flask import init_app

    alertkit.init(backends=["slack://hooks.slack.com/services/T/B/X"])
    app = Flask(__name__)
    init_app(app)

Per request (see :mod:`alertkit.integrations`): a scope with the method, path and headers (secret
ones masked), the endpoint name as ``transaction``, the status; the request is reported once
Flask has torn its context down, when its ``wsgi_app`` returns (before Flask 3.1, a body streamed
with ``stream_with_context`` kept the context until the stream ended, and so does the request),
not when the server has read the body. Flask turns an unhandled exception into a 500 page itself
(unless ``PROPAGATE_EXCEPTIONS``); its ``got_request_exception`` signal tells the request which
exception that was, so the request reports it once, with its traceback, and Flask's own
"Exception on /x [GET]" log line, if it reaches an :class:`~alertkit.AlertHandler`, is
not sent a second time.

Flask is imported when ``init_app`` runs, not at ``import alertkit``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from alertkit.capture.client import Client
from alertkit.capture.current import FINDERS
from alertkit.integrations import ActiveRequest, note_exception
from alertkit.integrations.wsgi import AlertkitMiddleware, Response, finish, status_of

_monotonic = time.monotonic

__all__ = ["init_app"]

_EXTENSION = "alertkit"


def _on_exception(sender: Any, exception: BaseException | None = None, **_: Any) -> None:
    if exception is not None:
        note_exception(exception)


def _endpoint(environ: dict[str, Any]) -> str | None:
    """The endpoint Flask routed the request to (its request object is in the environ)."""
    endpoint = getattr(environ.get("werkzeug.request"), "endpoint", None)
    return endpoint if isinstance(endpoint, str) else None


# The keys a tracked request leaves in its environ: when it began, and its request once made.
_STARTED = "alertkit.started"
_REQUEST = "alertkit.request"


class _FlaskMiddleware(AlertkitMiddleware):
    """The WSGI middleware for a Flask app whose request context is a context variable (Flask
    2.2 and later): the request is found through Flask's (``alertkit.capture.current.FINDERS``),
    never made current itself, and made only when something needs it. A request that reports
    nothing costs its start time and its status, no context switch and no object."""

    def __init__(self, context: ContextVar[Any], *args: Any) -> None:
        super().__init__(*args)
        if _keeps_streams():
            self.holds_request = partial(context.get, None)

    def request_of(self, environ: dict[str, Any]) -> ActiveRequest | None:
        """The tracked request of ``environ``, made now if it was not yet; None: not tracked."""
        request = environ.get(_REQUEST)
        if request is None:
            started = environ.get(_STARTED)
            if started is None:
                return None
            request = environ[_REQUEST] = self.tracker.found(environ, started)
        return request

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[_STARTED] = _monotonic()
        status: int | None = None

        def watch_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            nonlocal status
            try:  # "200 OK": PEP 3333's status line, read without a call
                status = int(status_line[:3]) if status_line[3:4] == " " else status_of(status_line)
            except (TypeError, ValueError):
                status = status_of(status_line)
            if status not in self.tracker.quiet:  # it will report: its route, while Flask knows it
                request = self.request_of(environ)
                if request is not None:
                    request.set_transaction(request.route_name())
            return start_response(status_line, headers, exc_info)  # (PEP 3333 allows None)

        try:
            result = self.app(environ, watch_start_response)
        except BaseException as exc:
            request = self.request_of(environ)
            if request is not None:
                request.status = status
                finish(request, exc)
            raise
        holds = self.holds_request
        held = None if holds is None else holds()
        tracker = self.tracker
        request = environ.get(_REQUEST)
        if request is None:
            if held is None and status in tracker.quiet:
                environ[_STARTED] = None  # ended: nothing is found for it from now on
                return result  # nothing captured, nothing to report: most requests end here
            request = self.request_of(environ)
            if request is None:
                return result
        request.status = status
        if held is not None:  # a streamed body still holds the request (Flask before 3.1)
            return Response(result, request)
        tracker.finish(request, status, None)
        return result


def _keeps_streams() -> bool:
    """Whether this Flask keeps a request context for a body streamed with
    ``stream_with_context`` after ``wsgi_app`` returns (before 3.1; 3.1 pushes it again around
    the body instead, so there is nothing to ask at every request)."""
    try:
        major, minor = (int(part) for part in version("flask").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return True  # unknown: ask
    return (major, minor) < (3, 1)


_apps_context: ContextVar[Any] | None = None  # Flask's request context, once an app is tracked


def _flask_request() -> ActiveRequest | None:
    """The finder: the tracked request of the Flask request context of this context, if any."""
    context = _apps_context.get(None) if _apps_context is not None else None
    if context is None:
        return None
    middleware = context.app.extensions.get(_EXTENSION)
    if not isinstance(middleware, _FlaskMiddleware):
        return None
    request = middleware.request_of(context.request.environ)
    # Ended: Flask 3.1 pushes the context again around a streamed body, after the request.
    return None if request is None or request.finished else request


def init_app(
    app: Any,
    client: Client | None = None,
    escalate_from: str | int = "error",
    failed_request_status_codes: Iterable[int] | None = None,
) -> Any:
    """Report the app's failing requests through alertkit; a second call changes nothing.

    Args:
        app: the ``flask.Flask`` app.
        client: the client to report through; default ``alertkit.get_client()`` at request time
            (so ``alertkit.init()`` may run after ``init_app``).
        escalate_from: the request level from which the request log is escalated.
        failed_request_status_codes: the statuses that make a request an error (default: 5xx).

    Returns:
        The app.

    Raises:
        ValueError: unknown ``escalate_from`` or a bad status code.
        ImportError: Flask is not installed (``pip install 'alertkit[flask]'``).
    """
    try:
        from flask import globals as flask_globals
        from flask import got_request_exception, has_request_context
    except ImportError as exc:
        raise ImportError(
            "alertkit.integrations.flask needs Flask: pip install 'alertkit[flask]'"
        ) from exc
    if _EXTENSION in app.extensions:
        return app
    global _apps_context
    options = (app.wsgi_app, client, escalate_from, failed_request_status_codes)
    # Flask tears the request down before ``wsgi_app`` returns (its teardown functions have run,
    # what they logged is the request's), unless a body streamed with ``stream_with_context``
    # still holds it (Flask before 3.1): the request ends when wsgi_app returns, or with that body.
    # (Not a teardown function of our own: Flask checks each for a coroutine at every request.)
    context = getattr(flask_globals, "_cv_request", None)
    middleware: AlertkitMiddleware
    if isinstance(context, ContextVar):  # the request is found through Flask's context
        middleware = _FlaskMiddleware(context, *options)
        if _apps_context is None:
            _apps_context = context
            FINDERS.append(_flask_request)
    else:  # a Flask without it: a context switch of our own per request
        middleware = AlertkitMiddleware(*options)
        middleware.holds_request = has_request_context
    middleware.route_of = _endpoint
    # Its bound method, not the middleware itself: Flask calls ``self.wsgi_app(...)`` at every
    # request, and an object's ``__call__`` costs that call several times a method's.
    app.wsgi_app = middleware.__call__
    # Connected for this app only, and strongly: the receiver is a module function.
    got_request_exception.connect(_on_exception, app, weak=False)
    app.extensions[_EXTENSION] = middleware
    return app
