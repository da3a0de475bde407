"""Celery: every failed task reported once, and nothing lost when a worker process ends.

::

    # tasks.py, the module the worker imports (celery -A tasks worker)
    import alertkit
    from alertkit.integrations import celery as alertkit_celery

    alertkit.init(backends=["pagerduty://KEY"])
    alertkit_celery.install()

What :func:`install` connects to Celery's signals:

* ``task_failure``: the task's exception becomes an error event (its traceback, the task's name,
  id and retries, and its arguments, which the pipeline scrubs and truncates like everything
  else). Celery's own log line for the same failure is not reported again.
* ``task_retry``: a task that will be retried is not reported, only its final failure (when the
  retries run out); ``report_retries=True`` sends a warning for each retry too.
* ``worker_process_shutdown``: a prefork pool process ends (``--max-tasks-per-child``,
  ``--max-memory-per-child``, a warm shutdown) with ``os._exit``, which skips ``atexit``; it
  first delivers, or spools, what it captured, within the client's shutdown budget.
* ``worker_shutdown``: the main worker process does the same when the worker stops.

Celery itself is imported only here: ``import alertkit`` never imports it.
"""

from __future__ import annotations

from typing import Any

from alertkit.capture import lifetime
from alertkit.capture.api import get_client
from alertkit.capture.client import Client
from alertkit.capture.flush import report_exception
from alertkit.guard import capture_internal_exceptions
from alertkit.model.errors import ConfigError

__all__ = ["install"]

_UID = "alertkit.integrations.celery"


class _Options:
    """What :func:`install` was given (the signal receivers read it)."""

    client: Client | None = None
    report_retries = False
    send_args = True


_options = _Options()


def install(
    client: Client | None = None,
    *,
    report_retries: bool = False,
    send_args: bool = True,
) -> None:
    """Report failed Celery tasks and flush when worker processes end; calling it again only
    changes the options.

    Args:
        client: the client to report to (default: the default client at the time of the event).
        report_retries: also send a warning event each time a task is retried (by default only
            the final failure is reported).
        send_args: include the task's (scrubbed) positional and keyword arguments.

    Raises:
        ConfigError: Celery is not installed (``pip install alertkit[celery]``).
    """
    try:
        from celery import signals
    except ImportError as exc:
        raise ConfigError(
            "alertkit.integrations.celery needs Celery: pip install 'alertkit[celery]'"
        ) from exc
    _options.client = client
    _options.report_retries = report_retries
    _options.send_args = send_args
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid=_UID)
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid=_UID)
    signals.worker_process_shutdown.connect(_on_process_end, weak=False, dispatch_uid=_UID)
    signals.worker_shutdown.connect(_on_process_end, weak=False, dispatch_uid=_UID)


def _client() -> Client:
    return _options.client if _options.client is not None else get_client()


def _details(task: Any, task_id: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    request = getattr(task, "request", None)
    details: dict[str, Any] = {
        "celery.task": getattr(task, "name", None),
        "celery.task_id": task_id,
        "celery.retries": getattr(request, "retries", 0) or 0,
    }
    if _options.send_args:
        details["celery.args"] = list(args or ())
        details["celery.kwargs"] = dict(kwargs or {})
    return details


def _on_failure(
    sender: Any = None,
    task_id: Any = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    traceback: Any = None,
    **_: Any,
) -> None:
    """``task_failure``: the task failed for good (retries, if any, are used up)."""
    with capture_internal_exceptions():
        if exception is None:
            return
        if exception.__traceback__ is None and traceback is not None:
            exception = exception.with_traceback(traceback)
        name = str(getattr(sender, "name", "") or "")
        report_exception(
            _client(),
            exception,
            details=_details(sender, task_id, args, kwargs),
            tags={"celery.task": name} if name else None,
        )


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """``task_retry``: reported only with ``report_retries``; the final failure always is."""
    if not _options.report_retries:
        return
    with capture_internal_exceptions():
        client = _client()
        name = str(getattr(sender, "name", "") or "")
        message = f"{name or 'task'} will be retried: {reason}"
        event = client.create_new_app_event(
            "warning", event_type="CeleryTaskRetry", event_message=message
        )
        details = _details(
            sender,
            getattr(request, "id", None),
            getattr(request, "args", None),
            getattr(request, "kwargs", None),
        )
        details["celery.retries"] = getattr(request, "retries", 0) or 0
        client.send_event_async(client.envelope_for(event, details=details))


def _on_process_end(**_: Any) -> None:
    """A pool process (or the worker) ends, perhaps with ``os._exit``: deliver what it holds,
    within each client's shutdown budget."""
    lifetime.shutdown_all_at_exit()
    if _options.client is not None:  # given to install() though made without register_atexit
        with capture_internal_exceptions():
            _options.client.shutdown()
