"""The per-request work every web integration shares: :class:`RequestTracker`.

See :mod:`alertkit.integrations` for what happens per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from contextvars import ContextVar, Token
from http import HTTPStatus
from typing import Any

from alertkit.capture.client import Client
from alertkit.capture.events import mark_reported
from alertkit.capture.request import PendingScope
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

_active: ContextVar[ActiveRequest | None] = ContextVar("alertkit_request", default=None)


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
    costs this one object, two context-variable switches and the request's breadcrumb trail.
    """

    __slots__ = (
        "absorb_loggers",
        "client",
        "describe",
        "exception",
        "finished",
        "headers",
        "method",
        "path",
        "request",
        "route",
        "started",
        "status",
        "token",
        "tracker",
        "transaction",
        "user",
    )

    def __init__(
        self,
        tracker: RequestTracker,
        client: Client,
        method: str,
        path: str,
        describe: Describe,
        request: Any,
    ) -> None:
        self.tracker = tracker
        self.client = client
        self.method = method
        self.path = path
        self.describe = describe
        self.request = request
        self.headers: Mapping[str, str] | None = None
        self.started = (time.time(), time.monotonic())
        #: The response's status, once the app has started the response.
        self.status: int | None = None
        #: The exception the framework turned into a response, with its traceback as it was then
        #: (see :func:`note_exception`).
        self.exception: ExcInfo | None = None
        #: ``user(request)`` gives the request's user when the request reports (a lazy lookup
        #: may cost a query).
        self.user: Callable[[Any], str | None] | None = None
        self.transaction: str | None = None
        #: ``route(request)`` gives the route (the ``transaction``) when the scope is made or the
        #: request reports, for a framework that knows it only once the app has routed it.
        self.route: Callable[[Any], str | None] | None = None
        #: Loggers whose records about the request the integration reports itself.
        self.absorb_loggers: tuple[str, ...] = ()
        self.finished = False
        PendingScope.__init__(self)  # current now, made when needed (not super(): cheaper)
        self.token: Token[ActiveRequest | None] | None = _active.set(self)

    def make(self) -> Scope:
        """The request's scope, as it would have been had it been made at the start."""
        scope = Scope(self.client, escalate_from=self.tracker.escalate_from)
        scope.set_start(*self.started)
        try:
            scope.url, self.headers = self.describe(self.request)
        except Exception as exc:  # an odd request: the log goes without its URL and headers
            report_internal_error(exc)
        if self.headers is not None:  # the caller's trace, unless a span is active
            continue_trace(scope, self.headers.get("traceparent"))
        extras: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.headers is not None:
            extras["headers"] = self.headers
        scope.add_to_log("request", f"{self.method} {self.path}", tag=API_LOGS, extras=extras)
        name = self.transaction or self.route_name()
        if name:
            scope.set_tag("transaction", name)
        for name in self.absorb_loggers:
            scope.absorb(logger=name)
        return scope

    def route_name(self) -> str | None:
        """The route from :attr:`route`, or None (also when it fails)."""
        route = self.route
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

    def leave(self) -> None:
        """Leave the request's scope and stop being the current request; idempotent."""
        token, self.token = self.token, None
        if token is None:
            return
        try:
            _active.reset(token)
        except ValueError:  # left in another context (a server closing elsewhere)
            if _active.get() is self:
                _active.set(None)
        PendingScope.leave(self)

    def note_exception(self, exc: BaseException) -> None:
        """The framework caught ``exc`` and answers with an error page: the request reports it,
        and a log record carrying it is not reported again."""
        if self.finished or not isinstance(exc, Exception):
            return
        self.exception = (type(exc), exc, exc.__traceback__)
        self.scope.absorb(exception=exc)


def current_request() -> ActiveRequest | None:
    """The request the current thread or task serves under an alertkit integration, or None."""
    request = _active.get()
    return None if request is None or request.finished else request


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

    Args:
        client: the client to report through; default ``alertkit.get_client()`` at request time.
        escalate_from: the request level from which the request log is escalated.
        failed_request_status_codes: the statuses that make a request an error (default: 5xx).

    Raises:
        ValueError: unknown ``escalate_from``, or a bad status code.
    """

    def __init__(
        self,
        client: Client | None,
        escalate_from: str | int,
        failed_request_status_codes: Iterable[int] | None = None,
    ) -> None:
        self._client = client
        self.escalate_from = normalize_level(escalate_from)
        self._threshold = LEVEL_NUMBERS[self.escalate_from]
        self.failed_request_status_codes = check_status_codes(failed_request_status_codes)
        # The statuses (None: no response) of a request that reports nothing when it captured
        # nothing, logged nothing and raised nothing: most requests, ended in one set lookup.
        failed = self.failed_request_status_codes
        self._quiet: frozenset[int | None] = frozenset(
            code
            for code in (None, *range(100, 600))
            if LEVEL_NUMBERS[status_level(code, failed)] < self._threshold
        )

    @property
    def client(self) -> Client:
        """The client given, else the default client at the time of the request."""
        client = self._client
        return client if client is not None else _default_client()

    def begin(
        self, method: str, path: str, describe: Describe, request: Any
    ) -> ActiveRequest | None:
        """Make the request current, with a scope made when first needed.

        ``describe(request)`` gives the request's URL and headers when the scope is made (most
        requests never need them): the middleware passes a module function and its own request
        object (environ, ASGI scope, Django request), so a request that ends well builds neither.

        Returns None (and the request runs without a scope) if that fails, e.g. when the default
        client cannot be made from a broken environment: alerting must not take requests down.
        """
        stale = _active.get()
        if stale is not None and stale.finished:  # a server that never closed the last response
            stale.leave()
        try:
            client = self._client
            if client is None:  # (not self.client: a request spares the property's call)
                client = _default_client()
        except Exception as exc:
            report_internal_error(exc)
            return None
        return ActiveRequest(self, client, method, path, describe, request)

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
            and status in self._quiet
        ):  # nothing captured, nothing to report: most requests end here, scope-less
            if leave:
                request.leave()
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
        if request.user is not None and scope.user is None:
            with capture_internal_exceptions():
                scope.set_user(request.user(request.request))
        method, path = request.method, request.path
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
