"""Web-framework middleware: a scope per request, escalated when the request goes wrong.

* :mod:`alertkit.integrations.asgi` — ``AlertkitMiddleware`` for ASGI apps (FastAPI, Starlette).
* :mod:`alertkit.integrations.wsgi` — ``AlertkitMiddleware`` for WSGI apps (Flask, Django).

Both do the same per request: open a scope (its events carry the request URL and the scope's
``alert_id``), log ``"request"`` in ``api_logs`` with method, path and status (a 5xx status is an
error, a 4xx a warning), record an unhandled exception with its traceback in ``error_logs``, end the
log, and escalate once the request's level reaches ``escalate_from``. An unhandled exception is
reported exactly once: inside the escalation (with its stack trace) or, when the request stays below
``escalate_from``, as an error event of its own. Then it propagates to the framework unchanged.
Errors the request logs at or above ``escalate_from`` are held by its scope and folded into the
escalation (the first is its headline), so one failing request is one event: one incident, one
message (:mod:`alertkit.capture.fold`).
Neither middleware needs the framework installed; they only speak the ASGI/WSGI protocols.
"""

from __future__ import annotations

from http import HTTPStatus

from alertkit.capture.client import Client
from alertkit.capture.scope import API_LOGS, Scope
from alertkit.guard import capture_internal_exceptions, report_internal_error
from alertkit.model.levels import normalize_level
from alertkit.model.stacktrace import safe_str

__all__ = ["RequestTracker", "status_level"]


def status_level(status: int | None) -> str:
    """The level a response status gives the request: 5xx error, 4xx warning, else info."""
    if status is None:
        return "info"
    if status >= 500:
        return "error"
    if status >= 400:
        return "warning"
    return "info"


def _reason(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


class RequestTracker:
    """The per-request work both middlewares share; never raises into the request."""

    def __init__(self, client: Client | None, escalate_from: str | int) -> None:
        self._client = client
        self.escalate_from = normalize_level(escalate_from)

    @property
    def client(self) -> Client:
        """The client given, else the default client at the time of the request."""
        if self._client is not None:
            return self._client
        from alertkit.capture.api import get_client

        return get_client()

    def begin(self, method: str, path: str, url: str | None) -> Scope | None:
        """Open and enter the request's scope and log the request line.

        Returns None (and the request runs without a scope) if that fails, e.g. when the default
        client cannot be made from a broken environment: alerting must not take requests down.
        """
        try:
            # escalate_from makes the scope hold the request's errors for its escalation.
            scope = self.client.scope(escalate_from=self.escalate_from)
            scope.url = url
            scope.add_to_log(
                "request", f"{method} {path}", tag=API_LOGS, extras={"method": method, "path": path}
            )
            scope.__enter__()
        except Exception as exc:
            report_internal_error(exc)
            return None
        return scope

    def finish(
        self, scope: Scope, method: str, path: str, status: int | None, exc: BaseException | None
    ) -> None:
        """Log the status, record the exception, escalate or capture it, and leave the scope."""
        try:
            with capture_internal_exceptions():
                failure = exc if isinstance(exc, Exception) else None
                if failure is not None and status is None:
                    status = 500
                scope.add_to_log(
                    "request",
                    None,
                    tag=API_LOGS,
                    code=status,
                    message=_reason(status) if status is not None else "no response",
                    level=status_level(status),
                    extras={"status": status},
                )
                if failure is not None:
                    scope.record_exception(failure)
                scope.end_logging()
                outcome = "failed" if failure is not None else f"-> {status}"
                message = f"{method} {path} {outcome}"
                if failure is not None:
                    message += f": {type(failure).__name__}: {safe_str(failure)}"
                sent = scope.escalate(message, from_level=self.escalate_from, exc_info=failure)
                if sent is None and failure is not None:
                    scope.capture_exception(
                        failure,
                        details={"request": {"method": method, "path": path, "status": status}},
                    )
        finally:
            scope._leave()
