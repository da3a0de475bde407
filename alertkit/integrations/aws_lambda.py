"""AWS Lambda: errors and timeouts reported and delivered before the invocation ends.

::

    import alertkit
    from alertkit.integrations.aws_lambda import wrap

    alertkit.init(backends=["pagerduty://KEY"])

    @wrap
    def handler(event, context):
        ...

Lambda freezes the execution environment as soon as the handler returns, with the pipeline's
threads mid-send, and kills it at the function's timeout: a plain SDK loses both. The wrapper:

* reports an exception escaping the handler (with the function name and request id) and waits,
  before re-raising, until it and everything else the invocation captured is delivered or
  spooled: at most ``flush_timeout`` seconds, and never past the function's deadline (read from
  ``context.get_remaining_time_in_millis()``, less ``margin``);
* flushes the same way when the handler returns normally;
* sends a warning event ``warn_before`` seconds before the deadline when the handler is still
  running (the timeout itself would kill the process unreported), and flushes it;
* counts in ``handler.flush_stats.late`` what could not be delivered in time: it stays queued
  (sent when the environment thaws for the next invocation) and never holds the invocation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

from alertkit.capture.client import Client
from alertkit.capture.flush import Settler, flush_within
from alertkit.guard import capture_internal_exceptions

__all__ = ["wrap"]

F = TypeVar("F", bound=Callable[..., Any])


_CONTEXT_FIELDS = ("function_name", "function_version", "aws_request_id", "invoked_function_arn")


def _details(context: Any) -> dict[str, Any]:
    """The context's identifying fields that it has (a test's context may have fewer)."""
    return {
        f"lambda.{name}": value
        for name in _CONTEXT_FIELDS
        if isinstance(value := getattr(context, name, None), str | int)
    }


def _remaining(context: Any) -> float | None:
    """Seconds left before the deadline (the runtime's ``get_remaining_time_in_millis()``), or
    None when the context cannot tell."""
    with capture_internal_exceptions():
        method = getattr(context, "get_remaining_time_in_millis", None)
        if method is not None:
            return max(0.0, float(method()) / 1000.0)
    return None


@overload
def wrap(handler: F) -> F: ...


@overload
def wrap(
    handler: None = None,
    *,
    client: Client | None = ...,
    flush_timeout: float = ...,
    warn_before: float | None = ...,
    margin: float = ...,
) -> Callable[[F], F]: ...


def wrap(
    handler: F | None = None,
    *,
    client: Client | None = None,
    flush_timeout: float = 2.0,
    warn_before: float | None = 1.5,
    margin: float = 0.1,
) -> F | Callable[[F], F]:
    """Wrap a Lambda handler ``handler(event, context)``; ``@wrap`` or ``@wrap(...)``.

    Args:
        handler: the handler (when used without parentheses).
        client: the client to report to (default: the default client at call time).
        flush_timeout: the most an invocation waits for delivery at its end, in seconds.
        warn_before: send the timeout warning this many seconds before the deadline; None
            sends none.
        margin: seconds kept free before the deadline by every wait.

    Raises:
        ValueError: a negative duration.
    """
    for name, value in (("flush_timeout", flush_timeout), ("margin", margin)):
        if value < 0:
            raise ValueError(f"aws_lambda.wrap: {name} must be >= 0, not {value!r}")
    if warn_before is not None and warn_before <= margin:
        raise ValueError(f"aws_lambda.wrap: warn_before must be > margin, not {warn_before!r}")

    def decorate(target: F) -> F:
        wrapped: F = _Wrapper(target, client, flush_timeout, warn_before, margin).handler()
        return wrapped

    return decorate if handler is None else decorate(handler)


class _Wrapper:
    """One wrapped handler: its options and its :class:`FlushStats`."""

    def __init__(
        self,
        target: Callable[..., Any],
        client: Client | None,
        flush_timeout: float,
        warn_before: float | None,
        margin: float,
    ) -> None:
        self.target = target
        self.settler = Settler(client)
        self.flush_timeout = flush_timeout
        self.warn_before = warn_before
        self.margin = margin
        self.stats = self.settler.stats

    def handler(self) -> Any:
        import functools

        @functools.wraps(self.target)
        def invoke(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            return self.invoke(event, context, *args, **kwargs)

        invoke.flush_stats = self.stats  # type: ignore[attr-defined]
        return invoke

    def _budget(self, context: Any) -> float:
        left = _remaining(context)
        if left is None:
            return self.flush_timeout
        return max(0.0, min(self.flush_timeout, left - self.margin))

    def invoke(self, event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        self.stats.add("calls")
        timer = self._arm(context)
        try:
            result = self.target(event, context, *args, **kwargs)
        except BaseException as exc:
            self._settle(context, exc, timer)
            raise
        self._settle(context, None, timer)
        return result

    def _settle(
        self, context: Any, exc: BaseException | None, timer: threading.Timer | None
    ) -> None:
        if timer is not None:
            timer.cancel()
        self.settler.settle(exc, self._budget(context), _details(context))

    def _arm(self, context: Any) -> threading.Timer | None:
        """Start the timeout warning's timer, if the deadline is known and far enough."""
        if self.warn_before is None:
            return None
        left = _remaining(context)
        if left is None or left <= self.warn_before:
            return None
        timer = threading.Timer(left - self.warn_before, self._warn, args=(context,))
        timer.daemon = True
        timer.name = "alertkit-lambda-timeout"
        with capture_internal_exceptions():
            timer.start()
            return timer
        return None

    def _warn(self, context: Any) -> None:
        """The handler is still running close to its deadline: say so while it can be said."""
        with capture_internal_exceptions():
            client = self.settler.client
            left = _remaining(context)
            name = getattr(context, "function_name", None) or "the function"
            message = f"{name} is about to time out"
            if left is not None:
                message += f" ({left * 1000:.0f} ms left)"
            event = client.create_new_app_event(
                "warning", event_type="LambdaTimeoutWarning", event_message=message
            )
            client.send_event_async(client.envelope_for(event, details=_details(context)))
            self.stats.add("warned")
            flush_within(client, self._budget(context), self.stats)
