"""Web-framework integrations: a scope per request, escalated when the request goes wrong.

* :mod:`alertkit.integrations.asgi` — ``AlertkitMiddleware`` for ASGI apps (any ASGI 3 app).
* :mod:`alertkit.integrations.wsgi` — ``AlertkitMiddleware`` for WSGI apps (any WSGI app).
* :mod:`alertkit.integrations.django` — one line in ``MIDDLEWARE``.
* :mod:`alertkit.integrations.flask` — ``init_app(app)``.
* :mod:`alertkit.integrations.starlette` (and ``.fastapi``) — ``init_app(app)``: also reports the
  exceptions the app's own exception handlers turn into 500 responses.

Each does the same per request (:class:`RequestTracker`): open a scope (its events carry the
request URL and the scope's ``alert_id``; it is made only when first needed, see
:class:`~alertkit.capture.request.PendingScope`), log ``"request"`` in ``api_logs`` with method, path and
the request headers (secret ones masked), tag the scope with the route as ``transaction``, log the
status (one of ``failed_request_status_codes``, by default every 5xx, makes the request an error;
another 4xx or 5xx a warning), record an unhandled exception with its traceback in ``error_logs``,
end the log, and escalate once the request's level reaches ``escalate_from``. An unhandled
exception is reported exactly once: inside the escalation (with its stack trace) or, when the
request stays below ``escalate_from``, as an error event of its own. Then it propagates to the
framework unchanged. Errors the request logs at or above ``escalate_from`` are held by its scope and
folded into the escalation (the first is its headline), so one failing request is one event: one
incident, one message (:mod:`alertkit.capture.fold`).

A framework that turns an exception into a 500 page itself tells its integration through
:func:`note_exception` (from its ``got_request_exception`` signal or its exception handler): the
request then reports that exception, with its traceback, and the framework's own log line about it
is not reported a second time. None of these modules imports a framework at ``import alertkit``.
"""

from __future__ import annotations

from alertkit.integrations.headers import RequestHeaders, environ_headers
from alertkit.integrations.request import (
    DEFAULT_FAILED_STATUS_CODES,
    ActiveRequest,
    Describe,
    RequestTracker,
    check_status_codes,
    current_request,
    note_exception,
    status_level,
)

__all__ = [
    "DEFAULT_FAILED_STATUS_CODES",
    "ActiveRequest",
    "Describe",
    "RequestHeaders",
    "RequestTracker",
    "check_status_codes",
    "current_request",
    "environ_headers",
    "note_exception",
    "status_level",
]
