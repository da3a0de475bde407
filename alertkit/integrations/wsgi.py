"""WSGI middleware (Flask, Django, any WSGI app): a scope per request.

::

    from flask import Flask
    from alertkit.integrations.wsgi import AlertkitMiddleware

    app = Flask(__name__)
    app.wsgi_app = AlertkitMiddleware(app.wsgi_app, escalate_from="error")

See :mod:`alertkit.integrations` for what happens per request. The scope stays current while the
server iterates the response body (a streamed body's errors are caught too) and ends when the server
closes the response, as PEP 3333 requires every server to do.

Flask and Django turn an unhandled exception into a 500 response themselves (unless Flask's
``PROPAGATE_EXCEPTIONS`` is on): the middleware then sees the 500, which makes the request an error,
and the traceback reaches ``error_logs`` through the framework's own error log record when an
:class:`~alertkit.AlertHandler` is attached to logging.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

from alertkit.capture.client import Client
from alertkit.integrations import ActiveRequest, RequestHeaders, RequestTracker, environ_headers

__all__ = ["AlertkitMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


#: Paths that ``wsgiref.util.request_uri`` would leave as they are: most paths, built cheaply.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~;=,-]*")


def request_url(environ: Environ, path: str) -> str | None:
    """``scheme://host/path`` of the request, without the query string (it may carry secrets);
    the same text as ``wsgiref.util.request_uri(environ, include_query=False)``, cheaper."""
    try:
        scheme = str(environ.get("wsgi.url_scheme") or "http")
        host = environ.get("HTTP_HOST")
        if not host:
            host = str(environ["SERVER_NAME"])
            port = str(environ.get("SERVER_PORT") or "")
            if port and port != ("443" if scheme == "https" else "80"):
                host += f":{port}"
        if not _PLAIN_PATH.fullmatch(path):
            path = quote(path, safe="/;=,", encoding="latin1")
        return f"{scheme}://{host}{path}"
    except Exception:  # an environ without the server keys
        return None


def request_line(environ: Environ) -> tuple[str, str]:
    """The method and path (``SCRIPT_NAME`` + ``PATH_INFO``) of a WSGI request."""
    method = str(environ.get("REQUEST_METHOD") or "GET")
    path = (str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")) or "/"
    return method, path


def describe(environ: Environ) -> tuple[str | None, RequestHeaders]:
    """The URL and headers of a WSGI request, read when its scope is made."""
    return request_url(environ, request_line(environ)[1]), RequestHeaders(environ_headers, environ)


def _status_code(status: str) -> int | None:
    """The code of a status line that is not PEP 3333's ``"200 OK"`` (None: not one)."""
    try:
        return int(str(status).split(" ", 1)[0])
    except (TypeError, ValueError):
        return None


def status_of(status_line: str) -> int | None:
    """The code of a WSGI status line (``"200 OK"``), None if it has none."""
    try:  # PEP 3333's status line, read the cheap way
        return int(status_line[:3]) if status_line[3:4] == " " else _status_code(status_line)
    except (TypeError, ValueError):
        return _status_code(status_line)


class Response:
    """The app's response iterable, finishing the request once: on an error while iterating,
    when the body is exhausted, or at ``close()``, whichever comes first."""

    __slots__ = ("_request", "_result")

    def __init__(self, result: Iterable[bytes], request: ActiveRequest) -> None:
        self._result = result
        self._request: ActiveRequest | None = request

    def _finish(self, exc: BaseException | None) -> None:
        request, self._request = self._request, None
        if request is not None:
            finish(request, exc)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except BaseException as exc:
            self._finish(exc)
            raise
        self._finish(None)  # the body is sent: end now, even if the server never calls close()

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._finish(exc)
            raise
        finally:
            self._finish(None)


def finish(request: ActiveRequest, exc: BaseException | None) -> None:
    if not request.finished:
        request.tracker.finish(request, request.status, exc)


class AlertkitMiddleware:
    """Wrap a WSGI app so each request runs in its own alertkit scope.

    Args:
        app: the WSGI application (for Flask: ``app.wsgi_app``; for Django: the
            ``get_wsgi_application()`` object).
        client: the client to report through; default ``alertkit.get_client()`` at request time.
        escalate_from: the request level from which the request log is escalated.
        failed_request_status_codes: the response statuses that make the request an error
            (default: every 5xx).

    Raises:
        ValueError: unknown ``escalate_from``, or a status code outside 100-599.
    """

    def __init__(
        self,
        app: WSGIApp,
        client: Client | None = None,
        escalate_from: str | int = "error",
        failed_request_status_codes: Iterable[int] | None = None,
    ) -> None:
        self.app = app
        self.tracker = RequestTracker(
            client,
            escalate_from,
            failed_request_status_codes,
            describe=describe,
            request_line=request_line,
        )
        #: Truthy while the app still holds the request after returning its response (set by a
        #: framework integration: Flask's request context outlives ``wsgi_app`` only for a body
        #: streamed with ``stream_with_context``). None: the request ends with the response body.
        self.holds_request: Callable[[], object] | None = None

    @property
    def route_of(self) -> Callable[[Environ], str | None] | None:
        """Gives the route of a request from its environ once the app has routed it (set by a
        framework integration, e.g. Flask's endpoint); None: no ``transaction`` tag."""
        return self.tracker.route

    @route_of.setter
    def route_of(self, route: Callable[[Environ], str | None] | None) -> None:
        self.tracker.route = route

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        tracker = self.tracker
        request = tracker.begin(None, None, environ)  # its method and path: read when needed
        if request is None:
            return self.app(environ, start_response)

        def watch_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status = request.status = status_of(status_line)
            if status not in tracker.quiet and tracker.route is not None:
                # The request will report: read its route while the app still knows it (Flask
                # forgets it when it tears the request down, before the request ends).
                request.set_transaction(request.route_name())
            return start_response(status_line, headers, exc_info)  # (PEP 3333 allows None)

        try:
            result = self.app(environ, watch_start_response)
        except BaseException as exc:
            finish(request, exc)
            raise
        holds = self.holds_request
        if holds is not None and not holds():  # the app is done with it: end it now
            tracker.finish(request, request.status, None)
            return result
        return Response(result, request)
