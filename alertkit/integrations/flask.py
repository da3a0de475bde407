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

from collections.abc import Iterable
from typing import Any

from alertkit.capture.client import Client
from alertkit.integrations import note_exception
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
        from flask import got_request_exception, has_request_context
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
    # Flask tears the request down before ``wsgi_app`` returns (its teardown functions have run,
    # what they logged is the request's), unless a body streamed with ``stream_with_context``
    # still holds it (Flask before 3.1): the request ends when wsgi_app returns, or with that body.
    # (Not a teardown function of our own: Flask checks each for a coroutine at every request.)
    middleware.holds_request = has_request_context
    # Its bound method, not the middleware itself: Flask calls ``self.wsgi_app(...)`` at every
    # request, and an object's ``__call__`` costs that call several times a method's.
    app.wsgi_app = middleware.__call__
    # Connected for this app only, and strongly: the receiver is a module function.
    got_request_exception.connect(_on_exception, app, weak=False)
    app.extensions[_EXTENSION] = middleware
    return app
