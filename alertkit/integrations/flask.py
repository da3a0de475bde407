"""Flask: ``init_app(app)``, one line.

::

    import alertkit
    from flask import Flask
    from alertkit.integrations.flask import init_app

    alertkit.init(backends=["slack://hooks.slack.com/services/T/B/X"])
    app = Flask(__name__)
    init_app(app)

Per request (see :mod:`alertkit.integrations`): a scope with the method, path and headers (secret
ones masked), the endpoint name as ``transaction``, the status; the request is reported when Flask
tears its context down (a streamed body with ``stream_with_context``: when the stream ends), not
when the server has read the body. Flask turns an unhandled exception
into a 500 page itself (unless ``PROPAGATE_EXCEPTIONS``); its ``got_request_exception`` signal tells
the request which exception that was, so the request reports it once, with its traceback, and
Flask's own "Exception on /x [GET]" log line, if it reaches an :class:`~alertkit.AlertHandler`, is
not sent a second time.

Flask is imported when ``init_app`` runs, not at ``import alertkit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from alertkit.capture.client import Client
from alertkit.integrations import current_request, note_exception
from alertkit.integrations.wsgi import AlertkitMiddleware

__all__ = ["init_app"]

_EXTENSION = "alertkit"


def _on_exception(sender: Any, exception: BaseException | None = None, **_: Any) -> None:
    if exception is not None:
        note_exception(exception)


def _endpoint(environ: dict[str, Any]) -> str | None:
    """The endpoint Flask routed the request to (its request object is in the environ)."""
    endpoint = getattr(environ.get("werkzeug.request"), "endpoint", None)
    return endpoint if isinstance(endpoint, str) else None


def _finisher(middleware: AlertkitMiddleware) -> Callable[[BaseException | None], None]:
    """The app's teardown function: the request is over (the response started, or the exception
    escaped): report it now, not when the server finishes reading the body (a test client may
    never read it). A teardown function, not a ``request_tearing_down`` receiver: blinker's
    dispatch to a receiver cost a request five times as much."""

    def finish(exc: BaseException | None) -> None:
        request = current_request()
        if request is not None:
            middleware.tracker.finish(request, request.status, exc)

    return finish


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
        from flask import got_request_exception
    except ImportError as exc:
        raise ImportError(
            "alertkit.integrations.flask needs Flask: pip install 'alertkit[flask]'"
        ) from exc
    if _EXTENSION in app.extensions:
        return app
    middleware = AlertkitMiddleware(
        app.wsgi_app, client, escalate_from, failed_request_status_codes
    )
    middleware.route_of = _endpoint
    app.wsgi_app = middleware
    # Connected for this app only, and strongly: the receiver is a module function.
    got_request_exception.connect(_on_exception, app, weak=False)
    # First in the list: Flask calls the app's teardown functions last to first, so the request
    # ends after every other one has run (what they log is still the request's).
    app.teardown_request_funcs.setdefault(None, []).insert(0, _finisher(middleware))
    app.extensions[_EXTENSION] = middleware
    return app
