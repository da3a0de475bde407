"""Chouette-style metrics: count, gauge, histogram, rate, set and ``timed``, through the pipeline.

::

    import alertkit.capture.metrics

    alertkit.init(backends=["redis://127.0.0.1:6379/0"], app_name="checkout")
    alertkit.capture.metrics.increment("checkout.orders", tags={"shop": "eu"})
    with alertkit.capture.metrics.timed("checkout.pay_seconds"):
        pay()

A metric call checks its arguments (a bad name, tag key or value raises ``ValueError`` at once,
never later), builds the raw Chouette message (WIRE.md section 3) and hands it to the client's
pipeline as an envelope of kind ``"metric"``: no I/O and no lock on the caller's thread. Backends
that declare the kind (Redis, the in-memory test backend) write it; the others never see it.
Level filters (``min_level``, ``CHOUETTE_LOG_LEVEL``) do not apply to metrics.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import math
import numbers
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast

from alertkit.capture.submit import Submitter, default_client
from alertkit.guard import capture_internal_exceptions
from alertkit.model.event import AppEvent, Envelope

if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "Metrics",
    "Timer",
    "count",
    "decrement",
    "distribution",
    "gauge",
    "histogram",
    "increment",
    "rate",
    "set",
    "timed",
]

#: The level number of metric envelopes: above every log level, so level filters never drop them.
METRIC_LEVELNO = 1_000_000

_P = ParamSpec("_P")
_R = TypeVar("_R")
_clock = time.perf_counter
_valid_names: builtins.set[str] = builtins.set()
_MAX_CACHED_NAMES = 10_000


def _check_name(what: str, name: Any) -> str:
    """``name`` if it is a non-empty string without whitespace; valid names are cached."""
    if name.__class__ is str and name in _valid_names:
        return name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    if any(char.isspace() for char in name):
        raise ValueError(f"{what} must not contain whitespace, got {name!r}")
    if len(_valid_names) < _MAX_CACHED_NAMES:
        _valid_names.add(name)
    return name


def _check_value(metric: str, value: Any) -> int | float:
    """A finite int or float; bools, strings, None, NaN and infinities are refused."""
    cls = value.__class__
    if cls is int:
        return cast(int, value)
    if cls is float:
        if value - value == 0.0:  # false for NaN and both infinities
            return cast(float, value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        as_float = float(value)
        if math.isfinite(as_float):
            return int(value) if isinstance(value, numbers.Integral) else as_float
    raise ValueError(f"metric {metric!r}: the value must be a finite number, got {value!r}")


def _check_timestamp(metric: str, timestamp: Any) -> float:
    if timestamp is None:
        return time.time()
    value = _check_value(metric, timestamp)
    if value <= 0:
        raise ValueError(
            f"metric {metric!r}: the timestamp must be seconds since the epoch, got {timestamp!r}"
        )
    return float(value)


def _check_tags(tags: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """Tags as ``{key: value}`` strings, from a mapping or from ``"key:value"`` strings."""
    if not tags:
        return {}  # a fresh dict: processors and backends may change a payload
    if isinstance(tags, str):
        raise ValueError(f"tags must be a mapping or a list of 'key:value' strings, got {tags!r}")
    items: Iterable[tuple[Any, Any]]
    if isinstance(tags, Mapping):
        items = tags.items()
    else:
        pairs = []
        for tag in tags:
            if not isinstance(tag, str):
                raise ValueError(f"a tag must be a 'key:value' string, got {tag!r}")
            key, _, value = tag.partition(":")
            pairs.append((key, value))
        items = pairs
    return {_check_name("a tag key", key): str(value) for key, value in items}


def _refuse_distribution(metric: Any) -> NoReturn:
    raise NotImplementedError(
        f"metric {metric!r}: distribution metrics are not supported, because the Chouette "
        "aggregator cannot aggregate them; use histogram() instead"
    )


def _metric_envelope(payload: dict[str, Any]) -> Envelope:
    """The envelope of a metric; built on the policy thread, not the caller's."""
    event = AppEvent(
        api_key="",
        classification="metric",
        event_type=payload["metric"],
        event_message=f"{payload['type']} {payload['metric']}",
    )
    return Envelope(event=event, kind="metric", levelno=METRIC_LEVELNO, payload=payload)


class Metrics:
    """The metric calls of one client (``client.metrics``).

    Every call returns True when the metric was queued, False when the pipeline dropped it (full
    intake queue or shut down). None of them waits for a destination.
    """

    __slots__ = ("_client", "_submit")

    def __init__(self, client: Submitter) -> None:
        self._client = client
        self._submit = client.submit_capture

    def _send(self, kind: str, metric: Any, value: Any, timestamp: Any, tags: Any) -> bool:
        name = _check_name("a metric name", metric)
        payload = {
            "metric": name,
            "type": kind,
            "value": _check_value(name, value),
            "timestamp": _check_timestamp(name, timestamp),
            "tags": _check_tags(tags),
        }
        return self._submit(functools.partial(_metric_envelope, payload))

    def count(
        self,
        metric: str,
        value: float,
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A count: the aggregator sums the values of one flush interval.

        Args:
            metric: the metric name (non-empty, no whitespace).
            value: a finite number.
            timestamp: seconds since the epoch; default now.
            tags: ``{"key": "value"}`` or ``["key:value"]``.

        Raises:
            ValueError: a bad name, tag key, value or timestamp.
        """
        return self._send("count", metric, value, timestamp, tags)

    def increment(
        self,
        metric: str,
        value: float = 1,
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A count of ``+value`` (default 1)."""
        return self._send("count", metric, value, timestamp, tags)

    def decrement(
        self,
        metric: str,
        value: float = 1,
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A count of ``-value`` (default -1)."""
        name = _check_name("a metric name", metric)
        return self._send("count", name, -_check_value(name, value), timestamp, tags)

    def gauge(
        self,
        metric: str,
        value: float,
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A gauge: the last value of a flush interval wins."""
        return self._send("gauge", metric, value, timestamp, tags)

    def histogram(
        self,
        metric: str,
        value: float,
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A histogram: the aggregator derives count, average, median, max and percentiles."""
        return self._send("histogram", metric, value, timestamp, tags)

    def rate(
        self,
        metric: str,
        value: float,
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A rate: the values of a flush interval summed and divided by its length."""
        return self._send("rate", metric, value, timestamp, tags)

    def set(
        self,
        metric: str,
        values: Iterable[str | float],
        timestamp: float | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> bool:
        """A set: the aggregator counts the distinct values (strings or finite numbers).

        Raises:
            ValueError: as for :meth:`count`, or an element that is not a string or a finite number.
        """
        name = _check_name("a metric name", metric)
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(
                f"metric {name!r}: a set takes a list or set of values, got {values!r}"
            )
        items = [item if isinstance(item, str) else _check_value(name, item) for item in values]
        payload = {
            "metric": name,
            "type": "set",
            "value": items,
            "timestamp": _check_timestamp(name, timestamp),
            "tags": _check_tags(tags),
        }
        return self._submit(functools.partial(_metric_envelope, payload))

    def distribution(self, metric: str, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: Chouette cannot aggregate distributions.

        Raises:
            NotImplementedError: always; use :meth:`histogram`.
        """
        _refuse_distribution(metric)

    def timed(
        self,
        metric: str,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
        use_ms: bool = False,
    ) -> Timer:
        """Time a block or a function and send the duration as a histogram.

        Usable as ``with``, ``async with``, and as a decorator of plain and ``async def``
        functions. The duration is in seconds (a float), or in whole milliseconds with ``use_ms``.

        Raises:
            ValueError: a bad name or tag key (at once, not when the timer stops).
        """
        return Timer(metric, tags, use_ms, self)


class Timer:
    """The object :func:`timed` returns: a context manager and a decorator."""

    __slots__ = ("_metrics", "_starts", "metric", "tags", "use_ms")

    def __init__(
        self,
        metric: str,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
        use_ms: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.metric = _check_name("a metric name", metric)
        self.tags = _check_tags(tags)
        self.use_ms = bool(use_ms)
        self._metrics = metrics
        self._starts: list[float] = []

    def _record(self, started: float) -> None:
        duration = max(0.0, _clock() - started)
        value: float = round(duration * 1000) if self.use_ms else duration
        with capture_internal_exceptions():  # the timed code's own outcome must stand
            metrics = self._metrics
            if metrics is None:
                metrics = _default()
            metrics.histogram(self.metric, value, tags=self.tags)

    def __enter__(self) -> Timer:
        self._starts.append(_clock())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._record(self._starts.pop())

    async def __aenter__(self) -> Timer:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: Callable[_P, _R]) -> Callable[_P, _R]:
        """Decorate ``func`` (plain or ``async def``): each call's duration becomes a histogram."""
        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[_P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def timed_coroutine(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                started = _clock()
                try:
                    return await async_func(*args, **kwargs)
                finally:
                    self._record(started)

            return cast(Callable[_P, _R], timed_coroutine)

        @functools.wraps(func)
        def timed_function(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            started = _clock()
            try:
                return func(*args, **kwargs)
            finally:
                self._record(started)

        return timed_function


# -- module-level functions on the default client (alertkit.init) --------------------------------


_default_metrics: Metrics | None = None


def _default() -> Metrics:
    """The default client's metrics (made again when ``alertkit.init`` replaces the client)."""
    global _default_metrics
    client = default_client()
    metrics = _default_metrics
    if metrics is None or metrics._client is not client:
        metrics = _default_metrics = Metrics(client)
    return metrics


def count(
    metric: str,
    value: float,
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.count` on the default client."""
    return _default().count(metric, value, timestamp, tags)


def increment(
    metric: str,
    value: float = 1,
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.increment` on the default client."""
    return _default().increment(metric, value, timestamp, tags)


def decrement(
    metric: str,
    value: float = 1,
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.decrement` on the default client."""
    return _default().decrement(metric, value, timestamp, tags)


def gauge(
    metric: str,
    value: float,
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.gauge` on the default client."""
    return _default().gauge(metric, value, timestamp, tags)


def histogram(
    metric: str,
    value: float,
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.histogram` on the default client."""
    return _default().histogram(metric, value, timestamp, tags)


def rate(
    metric: str,
    value: float,
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.rate` on the default client."""
    return _default().rate(metric, value, timestamp, tags)


def set(
    metric: str,
    values: Iterable[str | float],
    timestamp: float | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> bool:
    """:meth:`Metrics.set` on the default client."""
    return _default().set(metric, values, timestamp, tags)


def distribution(metric: str, *args: Any, **kwargs: Any) -> NoReturn:
    """Refused, as :meth:`Metrics.distribution`.

    Raises:
        NotImplementedError: always; use :func:`histogram`.
    """
    _refuse_distribution(metric)


def timed(
    metric: str, tags: Mapping[str, Any] | Iterable[str] | None = None, use_ms: bool = False
) -> Timer:
    """:meth:`Metrics.timed` on the default client, looked up when the timer stops, so a function
    decorated at import time reports through the client ``alertkit.init`` makes later."""
    return Timer(metric, tags, use_ms)
