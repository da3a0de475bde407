"""Django: one line in ``MIDDLEWARE``.

::

    # settings.py
    MIDDLEWARE = [
        "alertkit.integrations.django.AlertkitMiddleware",
        ...
    ]
    ALERTKIT = {"backends": ["pagerduty://<routing-key>"], "app_version": "2.4.1"}

``settings.ALERTKIT``, when present, holds the :func:`alertkit.init` options (plus the middleware's
own ``escalate_from`` and ``failed_request_status_codes``); without it the middleware reports
through ``alertkit.get_client()``, made by your own ``alertkit.init(...)`` call as usual.

Per request (see :mod:`alertkit.integrations`): a scope with the method, path and headers (secret
ones masked), the URL name (else the route pattern) as ``transaction``, the authenticated
``request.user`` as the event user (looked up only when the request reports, so a request that
reports nothing costs no session query), and the status. Django turns a view's exception into a
500 page itself; its ``got_request_exception`` signal tells the request which exception that was,
so the request reports it once, with its traceback. Django's own ``django.request`` log lines about
the request ("Internal Server Error: /x", "Not Found: /x") are not sent a second time by an
:class:`~alertkit.AlertHandler`: the middleware reports the request's outcome itself.

Works under WSGI and ASGI (the middleware is sync and async capable). Django is imported when the
middleware is loaded, never at ``import alertkit``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import got_request_exception

from alertkit.capture.api import get_client, init
from alertkit.capture.current import FINDERS, running_task
from alertkit.guard import capture_internal_exceptions
from alertkit.integrations import (
    ActiveRequest,
    RequestHeaders,
    RequestTracker,
    environ_headers,
    note_exception,
)

__all__ = ["AlertkitMiddleware"]

_monotonic = time.monotonic

#: Keys of ``settings.ALERTKIT`` that configure the middleware rather than the client.
MIDDLEWARE_OPTIONS = ("escalate_from", "failed_request_status_codes")
#: The logger Django reports requests on; the middleware reports them itself.
REQUEST_LOGGER = "django.request"

# The ALERTKIT options the default client was made from: a second middleware instance (each test
# client loads the middleware again) keeps that client instead of replacing it.
_configured: dict[str, Any] | None = None


def _settings_options() -> dict[str, Any]:
    """Init the default client from ``settings.ALERTKIT`` once; return the middleware's options."""
    global _configured
    config = getattr(settings, "ALERTKIT", None)
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            "settings.ALERTKIT must be a dict of alertkit.init() options, "
            f"not {type(config).__name__}"
        )
    options = dict(config)
    own = {key: options.pop(key) for key in MIDDLEWARE_OPTIONS if key in options}
    if _configured != options:
        try:
            init(**options)
        except TypeError as exc:  # an unknown option: say where it came from
            raise ImproperlyConfigured(f"settings.ALERTKIT: {exc}") from exc
        _configured = options
    return own


def _user(request: Any) -> str | None:
    """The authenticated user's name (``get_username()``), else None."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    get_username = getattr(user, "get_username", None)
    name = get_username() if callable(get_username) else None
    return str(name or user)


def _transaction(request: Any) -> str | None:
    """The URL's name (``app:name``), else its route pattern, else the view's dotted path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    if match.url_name:
        return str(match.view_name)
    if match.route:
        return "/" + str(match.route).lstrip("^/")
    return str(match._func_path)


def _request_line(request: Any) -> tuple[str, str]:
    return str(request.method or "GET"), str(request.path)


def _describe(request: Any) -> tuple[str | None, RequestHeaders]:
    """The URL (``scheme://host/path``, without the query string: it may carry secrets) and the
    headers of a request, read when its scope is made."""
    meta = request.META
    headers = RequestHeaders(environ_headers, meta)
    host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME")
    if not host:
        return None, headers
    return f"{request.scheme}://{host}{request.path}", headers


class AlertkitMiddleware:
    """Django middleware: each request in its own alertkit scope, reported when it fails.

    Raises:
        django.core.exceptions.ImproperlyConfigured: ``settings.ALERTKIT`` is not a dict or
            holds an unknown option.
        ValueError: a bad ``escalate_from`` or status code in ``settings.ALERTKIT``.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        options = _settings_options()
        self.get_response = get_response
        self.tracker = RequestTracker(
            None,
            options.get("escalate_from", "error"),
            options.get("failed_request_status_codes"),
            describe=_describe,
            request_line=_request_line,
            route=_transaction,
            user=_user,
            absorb_loggers=(REQUEST_LOGGER,),
        )
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        if _django_request not in FINDERS:
            FINDERS.append(_django_request)

    def _begin(self, request: Any) -> ActiveRequest | None:
        return self.tracker.begin(None, None, request)  # its method and path: read when needed

    def _finish(self, active: ActiveRequest, response: Any, exc: BaseException | None) -> None:
        status = getattr(response, "status_code", None)
        if not isinstance(status, int):
            status = None
        # Django logs a 4xx/5xx response ("Not Found: /x") after the middleware returns: the
        # scope stays current, absorbing that line, until the server closes the response.
        closers = None
        if status is not None and status >= 400:
            closers = getattr(response, "_resource_closers", None)
            if not isinstance(closers, list):
                closers = None
        self.tracker.finish(active, status, exc, leave=closers is None)
        if closers is not None:
            closers.append(active.leave)

    def request_of(self, served: _Served) -> ActiveRequest | None:
        """The request of ``served``, made now if it was not yet (None: see ``found``)."""
        active: ActiveRequest | None = served[_ACTIVE]
        if active is None:
            active = served[_ACTIVE] = self.tracker.found(served[_REQUEST], served[_STARTED])
        return active

    def __call__(self, request: Any) -> Any:
        """A sync request: found through the thread that serves it (see :data:`_serving`), made
        only when something needs it."""
        if self.is_async:
            return self._acall(request)
        serving = _serving
        outer = serving.now
        if outer is not None and outer[_ACTIVE] is not None and outer[_ACTIVE].finished:
            outer = _leave_stale(outer)  # a response the server never closed
        served = serving.now = [request, _monotonic(), self, outer, None]
        try:
            response = self.get_response(request)
        except BaseException as exc:  # DEBUG_PROPAGATE_EXCEPTIONS, or a middleware inside ours
            serving.now = outer
            active = self.request_of(served)
            if active is not None:
                self.tracker.finish(active, None, exc)
            raise
        status = getattr(response, "status_code", None)
        if type(status) is int and status < 400:  # most responses: Django logs nothing after
            serving.now = outer
            active = served[_ACTIVE]
            if active is not None or status not in self.tracker.quiet:
                active = self.request_of(served)
                if active is not None:
                    self.tracker.finish(active, status, None)
            return response
        active = self.request_of(served)
        if active is None:
            serving.now = outer
            return response
        # Django logs a 4xx/5xx response ("Not Found: /x") after the middleware returns: the
        # request stays this thread's, absorbing that line, until the server closes the response.
        closers = getattr(response, "_resource_closers", None)
        self.tracker.finish(active, status if type(status) is int else None, None, leave=False)
        if isinstance(closers, list):
            closers.append(partial(_close, served))
        else:
            _close(served)
        return response

    async def _acall(self, request: Any) -> Any:
        active = self._begin(request)
        get_response: Callable[[Any], Awaitable[Any]] = self.get_response
        if active is None:
            return await get_response(request)
        active.task = running_task()  # this task keeps the request's own breadcrumbs
        try:
            response = await get_response(request)
        except BaseException as exc:
            self._finish(active, None, exc)
            raise
        self._finish(active, response, None)
        return response


#: What the sync middleware keeps per request: ``[request, started, middleware, outer, active]``
#: (a list: cheaper to make than an object; the request is made into ``active`` when needed).
_Served = list[Any]
_REQUEST, _STARTED, _MIDDLEWARE, _OUTER, _ACTIVE = range(5)


class _Serving(threading.local):
    """The Django request each thread serves through the sync middleware, found through it by
    ``alertkit.capture.current.FINDERS`` (a sync view runs on the thread of its middleware): no
    context switch per request. Async requests are made current in their task instead."""

    now: _Served | None = None  # (a class default: a thread that never served reads None)


_serving = _Serving()


def _close(served: _Served) -> None:
    """The response is closed: the request leaves the thread (and its scope ends)."""
    active = served[_ACTIVE]
    if active is not None:
        active.leave()
    if _serving.now is served:
        _serving.now = served[_OUTER]


def _leave_stale(served: _Served) -> _Served | None:
    """End a request whose response was never closed; what was served before it."""
    while served is not None and served[_ACTIVE] is not None and served[_ACTIVE].finished:
        _close(served)
        served = served[_OUTER]
    return served


def _django_request() -> ActiveRequest | None:
    """The finder: the request this thread serves, if any (made now if it was not yet)."""
    served = _serving.now
    if served is None:
        return None
    middleware: AlertkitMiddleware = served[_MIDDLEWARE]
    return middleware.request_of(served)


def _on_exception(sender: Any, request: Any = None, **_: Any) -> None:
    """``got_request_exception``: Django is about to answer ``sys.exc_info()`` with a 500 page."""
    exc = sys.exc_info()[1]
    if exc is None or note_exception(exc):
        return
    # Raised outside the middleware (in a middleware listed before it): report it here.
    with capture_internal_exceptions():
        details = {
            "method": getattr(request, "method", None),
            "path": getattr(request, "path", None),
        }
        get_client().scope().capture_exception(exc, details={"request": details})


got_request_exception.connect(_on_exception, dispatch_uid="alertkit.integrations.django")
