"""The per-request work every web integration shares: :class:`RequestTracker`.

See :mod:`alertkit.integrations` for what happens per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from alertkit.capture.client import Client
from alertkit.capture.current import current, current_frame
from alertkit.capture.events import mark_reported
from alertkit.capture.request import NOT_CURRENT, PendingScope
from alertkit.capture.scope import API_LOGS, Scope
from alertkit.capture.submit import default_client
from alertkit.capture.trace import continue_trace
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.model.levels import LEVEL_NUMBERS, normalize_level
from alertkit.model.stacktrace import ExcInfo, resolve_exc_info, safe_str

__all__ = [
    "DEFAULT_FAILED_STATUS_CODES",
    "ActiveRequest",
    "Describe",
    "RequestTracker",
    "check_status_codes",
    "current_request",
    "note_exception",
    "status_level",
]

#: The statuses that make a request an error by default: every 5xx. A 4xx (an ``HTTPException``
#: such as 404) is a warning unless listed in ``failed_request_status_codes``.
DEFAULT_FAILED_STATUS_CODES: frozenset[int] = frozenset(range(500, 600))

#: ``describe(request) -> (url, headers)``: what a middleware knows of its request object.
Describe = Callable[[Any], tuple[str | None, Mapping[str, str] | None]]

#: ``alertkit.get_client()`` without its two calls (``get_client`` and ``cast``): alertkit's
#: default client is always a Client.
_default_client: Callable[[], Client] = default_client  # type: ignore[assignment]


def status_level(status: int | None, failed: Collection[int] = DEFAULT_FAILED_STATUS_CODES) -> str:
    """The level a response status gives the request: a failed status is an error, another 4xx
    or 5xx a warning, anything else info."""
    if status is None:
        return "info"
    if status in failed:
        return "error"
    if status >= 400:
        return "warning"
    return "info"


def check_status_codes(codes: Iterable[int] | None) -> frozenset[int]:
    """``failed_request_status_codes`` as a set; raises ValueError naming the option when bad."""
    if codes is None:
        return DEFAULT_FAILED_STATUS_CODES
    try:
        found = frozenset(codes)
    except TypeError:
        raise ValueError(
            "failed_request_status_codes must be a collection of HTTP status codes "
            f"(e.g. range(500, 600)); got {codes!r}"
        ) from None
    bad = sorted(
        repr(c)
        for c in found
        if isinstance(c, bool) or not isinstance(c, int) or not 100 <= c <= 599
    )
    if bad:
        raise ValueError(
            f"failed_request_status_codes: not HTTP status codes (100-599): {', '.join(bad)}"
        )
    return found


_REASONS: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}


def _reason(status: int) -> str | None:
    return _REASONS.get(status)


class ActiveRequest(PendingScope):
    """One request in flight, current from its making: its pending scope and what its
    framework told about it.

    The scope is made only when needed (the request is a
    :class:`~alertkit.capture.request.PendingScope`): when something is captured or logged in the
    request, or when the request is reported. A request that ends well and captures nothing
    costs this one object and one context-variable switch (it is the current scope: see
    :mod:`alertkit.capture.current`); its breadcrumb trail is made at its first crumb.
    """

    __slots__ = (
        "client",
        "exception",
        "finished",
        "headers",
        "method",
        "path",
        "request",
        "started",
        "status",
        "tracker",
        "transaction",
    )

    def __init__(
        self,
        tracker: RequestTracker,
        client: Client,
        method: str | None,
        path: str | None,
        request: Any,
        started: float | None = None,
    ) -> None:
        self.tracker = tracker
        self.client = client
        #: The method and path, or None until :meth:`line` reads them (see ``request_line``).
        self.method = method
        self.path = path
        #: The framework's request object (environ, ASGI scope, Django request), which the
        #: tracker's ``describe``, ``route`` and ``user`` read when needed.
        self.request = request
        self.headers: Mapping[str, str] | None = None
        self.started = time.monotonic() if started is None else started
        #: The response's status, once the app has started the response.
        self.status: int | None = None
        #: The exception the framework turned into a response, with its traceback as it was then
        #: (see :func:`note_exception`).
        self.exception: ExcInfo | None = None
        self.transaction: str | None = None
        self.finished = False
        # Current now (unless its framework keeps it current: ``started`` given, see
        # RequestTracker.found), made when needed: PendingScope.__init__ written out.
        self.crumbs = self.made = self.task = None  # (an async middleware sets the task)
        if started is None:
            self.outer = current.get()
            self._token = current.set(self)
        else:
            self.outer = None
            self._token = NOT_CURRENT

    def make(self) -> Scope:
        """The request's scope, as it would have been had it been made at the start."""
        tracker = self.tracker
        scope = Scope(self.client, escalate_from=tracker.escalate_from)
        clock = time.monotonic()
        scope.set_start(time.time() - (clock - self.started), self.started)
        try:
            scope.url, self.headers = tracker.describe(self.request)
        except Exception as exc:  # an odd request: the log goes without its URL and headers
            report_internal_error(exc)
        if self.headers is not None:  # the caller's trace, unless a span is active
            continue_trace(scope, self.headers.get("traceparent"))
        method, path = self.line()
        extras: dict[str, Any] = {"method": method, "path": path}
        if self.headers is not None:
            extras["headers"] = self.headers
        scope.add_to_log("request", f"{method} {path}", tag=API_LOGS, extras=extras)
        name = self.transaction or self.route_name()
        if name:
            scope.set_tag("transaction", name)
        for name in tracker.absorb_loggers:
            scope.absorb(logger=name)
        return scope

    def line(self) -> tuple[str, str]:
        """The request's method and path, read from the request object when first needed."""
        method, path = self.method, self.path
        if method is None or path is None:
            read = self.tracker.request_line
            try:
                method, path = ("GET", "/") if read is None else read(self.request)
            except Exception as exc:  # an odd request object
                report_internal_error(exc)
                method, path = method or "GET", path or "/"
            self.method, self.path = method, path
        return method, path

    def route_name(self) -> str | None:
        """The route from the tracker's ``route``, or None (also when it fails)."""
        route = self.tracker.route
        if route is None:
            return None
        try:
            return route(self.request)
        except Exception as exc:
            report_internal_error(exc)
            return None

    @property
    def scope(self) -> Scope:
        """The request's scope, made now if it was not yet."""
        return self.resolve()

    def set_transaction(self, name: str | None) -> None:
        """Tag the request's events with its route (``transaction``)."""
        if not name:
            return
        self.transaction = name
        made = self.made
        if made is not None:
            try:
                made.set_tag("transaction", name)
            except Exception as exc:
                report_internal_error(exc)

    def note_exception(self, exc: BaseException) -> None:
        """The framework caught ``exc`` and answers with an error page: the request reports it,
        and a log record carrying it is not reported again."""
        if self.finished or not isinstance(exc, Exception):
            return
        self.exception = (type(exc), exc, exc.__traceback__)
        self.scope.absorb(exception=exc)


def current_request() -> ActiveRequest | None:
    """The request the current thread or task serves under an alertkit integration, or None."""
    frame = current_frame()
    while frame is not None:  # the request, or a scope opened inside it
        if isinstance(frame, ActiveRequest):
            return None if frame.finished else frame
        frame = frame.outer
    return None


def note_exception(exc: BaseException) -> bool:
    """Tell the current request that the framework turned ``exc`` into an error response.

    Returns False outside a tracked request (the caller may then report ``exc`` itself). Called
    from the framework's signal or exception handler: never raises.
    """
    request = current_request()
    if request is None:
        return False
    try:
        request.note_exception(exc)
    except Exception as error:
        report_internal_error(error)
    return True


class RequestTracker:
    """The per-request work every integration shares; never raises into the request.

    What the integration knows of its framework's request object, the same for every request, is
    the tracker's: ``describe``, ``route``, ``user`` and ``absorb_loggers``.

    Args:
        client: the client to report through; default ``alertkit.get_client()`` at request time.
        escalate_from: the request level from which the request log is escalated.
        failed_request_status_codes: the statuses that make a request an error (default: 5xx).
        describe: ``describe(request) -> (url, headers)``, called when the scope is made (most
            requests never need it).
        route: ``route(request)`` gives the route (the ``transaction``) when the scope is made or
            the request reports, for a framework that knows it only once the app has routed it.
        user: ``user(request)`` gives the request's user when the request reports (a lazy
            lookup may cost a query).
        absorb_loggers: loggers whose records about the request the integration reports itself.
        request_line: ``request_line(request) -> (method, path)``, for a middleware that passes
            None for them to :meth:`begin` (reading them costs a request that ends well for
            nothing).

    Raises:
        ValueError: unknown ``escalate_from``, or a bad status code.
    """

    def __init__(
        self,
        client: Client | None,
        escalate_from: str | int,
        failed_request_status_codes: Iterable[int] | None = None,
        *,
        describe: Describe,
        route: Callable[[Any], str | None] | None = None,
        user: Callable[[Any], str | None] | None = None,
        absorb_loggers: tuple[str, ...] = (),
        request_line: Callable[[Any], tuple[str, str]] | None = None,
    ) -> None:
        self._client = client
        self.request_line = request_line
        self.describe = describe
        self.route = route
        self.user = user
        self.absorb_loggers = absorb_loggers
        self.escalate_from = normalize_level(escalate_from)
        self._threshold = LEVEL_NUMBERS[self.escalate_from]
        self.failed_request_status_codes = check_status_codes(failed_request_status_codes)
        failed = self.failed_request_status_codes
        #: The statuses (None: no response) of a request that reports nothing unless it captured,
        #: logged or raised something: most requests, ended in one set lookup.
        self.quiet: frozenset[int | None] = frozenset(
            code
            for code in (None, *range(100, 600))
            if LEVEL_NUMBERS[status_level(code, failed)] < self._threshold
        )

    @property
    def client(self) -> Client:
        """The client given, else the default client at the time of the request."""
        client = self._client
        return client if client is not None else _default_client()

    def begin(self, method: str | None, path: str | None, request: Any) -> ActiveRequest | None:
        """Make the request current, with a scope made when first needed.

        ``request`` is the framework's request object (environ, ASGI scope, Django request): the
        tracker's ``describe`` reads its URL and headers when the scope is made, so a request
        that ends well builds neither.

        Returns None (and the request runs without a scope) if that fails, e.g. when the default
        client cannot be made from a broken environment: alerting must not take requests down.
        """
        stale = current.get()
        if isinstance(stale, ActiveRequest) and stale.finished:  # a response never closed
            stale.leave()
        client = self._client
        if client is None:  # (not self.client: a request spares the property's call)
            client = self._default()
            if client is None:
                return None
        return ActiveRequest(self, client, method, path, request)

    @staticmethod
    def _default() -> Client | None:
        """The default client; None if making it fails (reported, never raised)."""
        try:
            return _default_client()
        except Exception as exc:
            report_internal_error(exc)
            return None

    def found(self, request: Any, started: float) -> ActiveRequest | None:
        """The request, made when first needed, of a framework that keeps its request current
        in a context of its own, found through it (see ``alertkit.capture.current.FINDERS``):
        never made current here, so a request that needs nothing costs no context switch.
        ``started``: ``time.monotonic()`` when it began. None: see :meth:`begin`."""
        client = self._client if self._client is not None else self._default()
        if client is None:
            return None
        return ActiveRequest(self, client, None, None, request, started)

    def finish(
        self,
        request: ActiveRequest,
        status: int | None,
        exc: BaseException | None,
        *,
        leave: bool = True,
    ) -> None:
        """Log the status, record the exception, escalate or capture it, and leave the scope.

        ``leave=False`` keeps the scope current until :meth:`ActiveRequest.leave`, for a framework
        that logs about the response after the middleware returned it (Django logs every 4xx and
        5xx response then): those records must still meet the scope that absorbs them.
        """
        request.finished = True
        if (
            exc is None
            and request.made is None
            and request.exception is None
            and status in self.quiet
        ):  # nothing captured, nothing to report: most requests end here, scope-less
            if leave:  # PendingScope.leave written out for a scope never made (no call)
                token, request._token = request._token, None
                if token is not None and token is not NOT_CURRENT:
                    try:
                        current.reset(token)
                    except ValueError:  # left in another context (a server closing elsewhere)
                        if current.get() is request:
                            current.set(None)
            return
        try:
            self._report(request, status, exc)
        except Exception as error:  # never into the request
            report_internal_error(error)
        finally:
            if leave:
                request.leave()

    def _report(
        self, request: ActiveRequest, status: int | None, exc: BaseException | None
    ) -> None:
        failure: BaseException | None = exc if isinstance(exc, Exception) else None
        info = resolve_exc_info(failure)
        noted = request.exception  # the framework answered it with an error page
        if (
            failure is None
            and noted is not None
            and (status is None or status in self.failed_request_status_codes)
        ):
            info = noted  # e.g. a 500 page; not an HTTPException's 404
            failure = noted[1]
        if failure is not None and status is None:
            status = 500
        level = status_level(status, self.failed_request_status_codes)
        made = request.made
        if made is None and failure is None and LEVEL_NUMBERS[level] < self._threshold:
            return  # nothing captured, nothing to report: most requests end here, scope-less
        scope = request.scope
        if request.transaction is None and "transaction" not in scope.tags:
            request.set_transaction(request.route_name())  # routed since the scope was made
        scope.add_to_log(
            "request",
            None,
            tag=API_LOGS,
            code=status,
            message=_reason(status) if status is not None else "no response",
            level=level,
            extras={"status": status},
        )
        if info is not None:
            scope.record_exception(info)
        scope.end()
        if failure is None and LEVEL_NUMBERS[scope.level] < self._threshold:
            return  # nothing to report: most requests end here
        user = self.user
        if user is not None and scope.user is None:
            with capture_internal_exceptions():
                scope.set_user(user(request.request))
        method, path = request.line()
        message = f"{method} {path} " + ("failed" if failure is not None else f"-> {status}")
        if failure is not None:
            message += f": {type(failure).__name__}: {safe_str(failure)}"
        sent = scope.escalate(message, from_level=self.escalate_from, exc_info=info)
        if sent is None and info is not None:
            details: dict[str, Any] = {"method": method, "path": path, "status": status}
            if request.headers is not None:
                details["headers"] = request.headers
            scope.capture_exception(info, details={"request": details})
        if failure is not None:  # once: a server that prints it through sys.excepthook (uWSGI)
            mark_reported(failure)
