"""Short-lived runtimes: report a function's exception and deliver before it returns.

A serverless function (AWS Lambda, Google Cloud Functions) or a cron script may be frozen or
killed the moment its handler returns: the pipeline's threads never get to send what the call
captured. :func:`flush_after` wraps such a function: an exception escaping it is reported, and
everything captured during the call is delivered (or spooled) before the function returns or
re-raises, within a time budget. What cannot go out in time stays queued and is counted in
:attr:`FlushStats.late`; the call never waits past the budget.

:mod:`alertkit.integrations.aws_lambda` builds on it with a budget read from the Lambda context.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from alertkit.capture.api import get_client
from alertkit.capture.client import Client
from alertkit.capture.events import mark_reported, was_reported
from alertkit.guard import capture_internal_exceptions

__all__ = ["FlushStats", "Settler", "flush_after", "flush_within", "report_exception"]

log = logging.getLogger("alertkit.flush")

F = TypeVar("F", bound=Callable[..., Any])


class FlushStats:
    """What a wrapped function's flushes achieved, for ``stats()``-like checks and tests.

    Attributes:
        calls: calls of the wrapped function.
        reported: exceptions reported.
        late: events still queued when a call's budget ran out (delivered later, spooled or
            dropped and counted by the pipeline as usual).
        warned: timeout warnings sent (a serverless function about to reach its deadline).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.reported = 0
        self.late = 0
        self.warned = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FlushStats(calls={self.calls}, reported={self.reported}, late={self.late}, "
            f"warned={self.warned})"
        )

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + count)


def report_exception(
    client: Client,
    exc: BaseException,
    *,
    details: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    level: str = "error",
) -> bool:
    """Send ``exc`` (with its traceback) as an event, unless it has been reported already.

    Returns whether it was queued now. Never raises into the caller.
    """
    with capture_internal_exceptions():
        if was_reported(exc):
            return False
        event = client.create_new_app_event(level, exc_info=exc)
        envelope = client.envelope_for(event, details=dict(details or {}))
        if tags:
            envelope.tags = {**envelope.tags, **tags}
        client.send_event_async(envelope)
        mark_reported(exc)
        return True
    return False


def flush_within(client: Client, budget: float, stats: FlushStats | None = None) -> bool:
    """Wait up to ``budget`` seconds for everything ``client`` accepted to settle; when the
    budget runs out, count (in ``stats``) and log what is still queued. Never raises."""
    with capture_internal_exceptions():
        if client.flush(max(0.0, budget)):
            return True
        late = client.pipeline.pending()
        if stats is not None:
            stats.add("late", late)
        log.warning(
            "alertkit: %d event(s) not delivered within the %.2f s budget; they stay queued",
            late,
            budget,
        )
    return False


@overload
def flush_after(func: F) -> F: ...


@overload
def flush_after(
    func: None = None,
    *,
    timeout: float = ...,
    client: Client | None = ...,
    report: bool = ...,
) -> Callable[[F], F]: ...


def flush_after(
    func: F | None = None,
    *,
    timeout: float = 2.0,
    client: Client | None = None,
    report: bool = True,
) -> F | Callable[[F], F]:
    """Decorator: report an exception escaping ``func`` and deliver what its call captured
    before it returns or re-raises, waiting at most ``timeout`` seconds.

    ``@flush_after`` or ``@flush_after(timeout=5, client=client)``; coroutine functions too.
    The wrapper's ``flush_stats`` (:class:`FlushStats`) counts calls, reports and late events.

    Args:
        func: the function (when used without parentheses).
        timeout: the flush budget per call, in seconds.
        client: the client to report to (default: the default client at call time).
        report: report an exception escaping ``func`` (it is re-raised either way).

    Raises:
        ValueError: ``timeout`` is negative.
    """
    if timeout < 0:
        raise ValueError(f"flush_after: timeout must be >= 0, not {timeout!r}")

    def decorate(target: F) -> F:
        return wrap_call(target, lambda *args: timeout, client=client, report=report)

    return decorate if func is None else decorate(func)


Budget = Callable[..., float]


class Settler:
    """The end of one wrapped call: report its exception, then flush within a budget; shared by
    :func:`flush_after` and the integrations for serverless runtimes."""

    def __init__(self, client: Client | None, *, report: bool = True) -> None:
        self._client = client
        self.report = report
        self.stats = FlushStats()

    @property
    def client(self) -> Client:
        """The client given, else the default client at the time of the call."""
        return self._client if self._client is not None else get_client()

    def settle(
        self,
        exc: BaseException | None,
        budget: float,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Report ``exc`` (an ``Exception``: not ``SystemExit`` or ``KeyboardInterrupt``) and
        wait up to ``budget`` seconds for delivery. Never raises."""
        with capture_internal_exceptions():
            client = self.client
            if (
                isinstance(exc, Exception)
                and self.report
                and report_exception(client, exc, details=details)
            ):
                self.stats.add("reported")
            flush_within(client, budget, self.stats)


def wrap_call(
    target: F,
    budget: Budget,
    *,
    client: Client | None = None,
    report: bool = True,
) -> F:
    """Wrap ``target`` so that each call reports its exception and flushes within
    ``budget(*args)`` seconds (the budget is read when the call ends)."""
    import inspect  # not at ``import alertkit``: it costs milliseconds

    settler = Settler(client, report=report)

    if inspect.iscoroutinefunction(target):

        @functools.wraps(target)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            import asyncio

            settler.stats.add("calls")
            try:
                result = await target(*args, **kwargs)
            except BaseException as exc:
                await asyncio.to_thread(settler.settle, exc, budget(*args))
                raise
            await asyncio.to_thread(settler.settle, None, budget(*args))
            return result

        wrapper: Any = run_async
    else:

        @functools.wraps(target)
        def run(*args: Any, **kwargs: Any) -> Any:
            settler.stats.add("calls")
            try:
                result = target(*args, **kwargs)
            except BaseException as exc:
                settler.settle(exc, budget(*args))
                raise
            settler.settle(None, budget(*args))
            return result

        wrapper = run
    wrapper.flush_stats = settler.stats
    return wrapper  # type: ignore[no-any-return]
