"""Per-request scopes: tags, a user and a request log that can escalate, held in a ContextVar.

::

    with client.scope(tags={"route": "checkout"}, user="jill@example.com"):
        add_to_log("cart", cart_id, tag=API_LOGS)
        start_service_log("payments", "charging card", url=PAYMENTS_URL)
        ...
        stop_service_log("payments", "card refused", level="error", code=402)
        escalate(from_level="error")  # one event with the whole request log, to every backend

Events captured inside a scope (``AlertHandler``, ``Client.log``, ``send_event_async``) carry its
tags, its user (``eventUser``) and its ``alert_id`` (``contextCrossAppCorrelationId``, unless one is
set), and errors among them enter the scope's ``error_logs``. In a scope that escalates when it ends
(``escalate_from``), those errors are held and folded into the escalation instead of being sent on
their own: one failing request, one event (:mod:`alertkit.capture.fold`). The scope is read on the caller's
thread (one ``ContextVar.get()``): context variables do not follow an event to the worker thread.

What Escalite (WIRE.md section 4) gets wrong and this module does not: the request's level is the
highest level seen in any section and never goes down; ``escalate`` goes through the client's
pipeline, so every backend is tried even when one fails; and the destinations belong to the client,
not to the process. Scopes are isolated between threads and between asyncio tasks (each task runs in
a copy of its creator's context: a task sees the scope it was created in until it opens its own).

This module is the public face (``alertkit.scope``): the functions over the current scope. The
:class:`Scope` object itself lives in :mod:`alertkit.capture.request`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alertkit.capture.fold import ESCALATION_EVENT_TYPE
from alertkit.capture.request import (
    Scope,
    ScopeContext,
    check_place,
    current_scope,
    set_current_scope,
)
from alertkit.capture.submit import default_client
from alertkit.model.levels import normalize_level
from alertkit.model.requestlog import API_LOGS, ERROR_LOGS, SERVICE_LOGS

if TYPE_CHECKING:
    from concurrent.futures import Future

    from alertkit.delivery.pipeline import Results

__all__ = [
    "API_LOGS",
    "ERROR_LOGS",
    "ESCALATION_EVENT_TYPE",
    "SERVICE_LOGS",
    "Scope",
    "ScopeContext",
    "add_service_log",
    "add_to_log",
    "current_scope",
    "end_logging",
    "escalate",
    "get_all_logs",
    "set_fingerprint",
    "set_tag",
    "set_user",
    "start_logging",
    "start_service_log",
    "stop_service_log",
]


# -- module-level functions over the current scope ----------------------------------------------


def start_logging() -> Scope:
    """Start a request log: afresh in the current scope, or in a new scope of the default client.

    Escalite's entry point. Without an open scope it opens one (for ``alertkit.get_client()``) in
    the current context, where it stays until the next ``start_logging()``; prefer
    ``with client.scope():``, which also restores the previous scope.
    """
    scope = current_scope()
    if scope is None:
        scope = Scope(default_client())
        set_current_scope(scope)
    else:
        scope.start_logging()
    return scope


def add_to_log(
    key: str,
    value: Any,
    tag: str | None = None,
    code: Any = None,
    message: str | None = None,
    level: str | int = "info",
    extras: dict[str, Any] | None = None,
) -> bool:
    """Add an entry to the current request log; False (nothing recorded) outside a scope.

    Args:
        key: the entry's key in its section; the same key again updates the entry (arguments
            that are None keep their old values, ``extras`` are merged).
        value: any value (made JSON-safe when the log is read or sent).
        tag: the section: ``"api_logs"``, ``"service_logs"``, ``"error_logs"`` or a name of your
            own; None puts the entry at the top level, as Escalite does.
        code: a status or error code.
        message: a human-readable message.
        level: debug, info, warning, error, fatal (or critical); raises the request's level.
        extras: more fields, kept under the entry's ``extras``.

    Raises:
        ValueError: unknown ``level``, or a reserved key/section name.
    """
    scope = current_scope()
    if scope is None:
        normalize_level(level)
        check_place(str(key), tag)
        return False
    scope.add_to_log(key, value, tag=tag, code=code, message=message, level=level, extras=extras)
    return True


def add_service_log(
    name: str,
    message: str | None,
    level: str | int = "info",
    url: str | None = None,
    code: Any = None,
) -> bool:
    """Record a service call in ``service_logs`` in one step; False outside a scope."""
    scope = current_scope()
    if scope is None:
        normalize_level(level)
        return False
    scope.add_service_log(name, message, level=level, url=url, code=code)
    return True


def start_service_log(
    name: str,
    message: str | None,
    level: str | int = "info",
    url: str | None = None,
    code: Any = None,
) -> bool:
    """Record the start of a call to service ``name``; False outside a scope."""
    scope = current_scope()
    if scope is None:
        normalize_level(level)
        return False
    scope.start_service_log(name, message, level=level, url=url, code=code)
    return True


def stop_service_log(
    name: str,
    message: str | None = None,
    level: str | int | None = None,
    code: Any = None,
    error_trace: str | BaseException | None = None,
) -> bool:
    """Record the end of a call to ``name`` (elapsed time, error trace); False outside a scope.

    ``level`` defaults to ``error`` with an ``error_trace``, else ``info``.
    """
    scope = current_scope()
    if scope is None:
        if level is not None:
            normalize_level(level)
        return False
    scope.stop_service_log(name, message, level=level, code=code, error_trace=error_trace)
    return True


def end_logging() -> dict[str, Any]:
    """End the current request log and return it; ``{}`` outside a scope."""
    scope = current_scope()
    return {} if scope is None else scope.end_logging()


def get_all_logs() -> dict[str, Any]:
    """A JSON-safe copy of the current request log; ``{}`` outside a scope."""
    scope = current_scope()
    return {} if scope is None else scope.get_all_logs()


def escalate(
    message: str | None = None, from_level: str | int = "error", exc_info: Any = None
) -> Future[Results] | None:
    """Escalate the current request (see :meth:`Scope.escalate`); None outside a scope."""
    scope = current_scope()
    if scope is None:
        normalize_level(from_level)
        return None
    return scope.escalate(message, from_level=from_level, exc_info=exc_info)


def set_tag(key: str, value: Any) -> bool:
    """Tag the current scope's events from now on; False outside a scope."""
    scope = current_scope()
    if scope is None:
        return False
    scope.set_tag(key, value)
    return True


def set_fingerprint(fingerprint: list[str] | str | None) -> bool:
    """Group the current scope's events from now on by ``fingerprint`` (``"{{ default }}"``
    stands for alertkit's own grouping); False outside a scope.

    Raises:
        TypeError: ``fingerprint`` is not a list of strings.
    """
    scope = current_scope()
    if scope is None:
        return False
    scope.fingerprint = fingerprint
    return True


def set_user(user: str | None) -> bool:
    """Set the current scope's user (``eventUser``); False outside a scope."""
    scope = current_scope()
    if scope is None:
        return False
    scope.set_user(user)
    return True
