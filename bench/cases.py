"""The SDKs under test, each set up as its users would, behind one small interface.

A case is a function ``setup(url) -> Sdk``; ``url`` is the sink's data port (``http://127.0.0.1:P``).
Every case logs through ``logging.getLogger("bench")`` so that the calling code is identical; what
differs is the handler (or integration) attached to it. Third-party packages are imported inside
the case, in the case's own subprocess.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A 32-character routing key (PagerDuty Events API v2 keys are 32 characters).
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class Sdk:
    """What the runner needs from a case: the logger, and how to flush and shut it down."""

    logger: logging.Logger
    flush: Callable[[float], Any] = lambda timeout: None
    shutdown: Callable[[float], Any] = lambda timeout: None
    stats: Callable[[], dict[str, Any]] = dict
    delivers: bool = True
    #: counts delivered events where the sink cannot (Redis): ``count() -> int``
    count: Callable[[], int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _logger() -> logging.Logger:
    logger = logging.getLogger("bench")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _drain(q: queue.Queue[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while q.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.005)
    return not q.unfinished_tasks


class _Nothing(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        """Drop the record: the listener's cost without any destination's."""


def _queued(logger: logging.Logger, target: logging.Handler) -> Sdk:
    """``QueueHandler`` + ``QueueListener`` feeding ``target``: the stdlib's non-blocking hand-off."""
    q: queue.Queue[Any] = queue.Queue(-1)
    listener = logging.handlers.QueueListener(q, target)
    listener.start()
    logger.addHandler(logging.handlers.QueueHandler(q))
    return Sdk(
        logger,
        flush=lambda timeout: _drain(q, timeout),
        shutdown=lambda timeout: listener.stop(),  # unbounded: it joins the listener thread
        stats=lambda: {"queued": q.qsize()},
    )


def filtered(url: str) -> Sdk:
    logger = _logger()
    logger.setLevel(logging.CRITICAL)
    logger.addHandler(logging.NullHandler())
    return Sdk(logger, delivers=False)


def null(url: str) -> Sdk:
    logger = _logger()
    logger.addHandler(logging.NullHandler())
    return Sdk(logger, delivers=False)


def queue_handler(url: str) -> Sdk:
    sdk = _queued(_logger(), _Nothing())
    sdk.delivers = False
    return sdk


def stdlib_http(url: str) -> Sdk:
    """The stdlib's own delivery: ``QueueHandler`` -> ``HTTPHandler`` (a connection per record)."""
    host = url.removeprefix("http://")
    return _queued(_logger(), logging.handlers.HTTPHandler(host, "/api/v1/events", method="POST"))


def _alertkit(backend: Any) -> Sdk:
    from alertkit import AlertHandler, Client

    client = Client(api_key="bench", backends=[backend])
    logger = _logger()
    handler = AlertHandler(client=client)
    logger.addHandler(handler)

    def stats() -> dict[str, Any]:
        counts = client.stats()
        return {
            "dropped": sum(entry.get("dropped", 0) for entry in counts.values()),
            "handler_dropped": handler.dropped,
            "intake_dropped": client.pipeline.intake_dropped,
            "backends": {
                name: {k: v for k, v in entry.items() if isinstance(v, int | str)}
                for name, entry in counts.items()
            },
        }

    return Sdk(logger, flush=client.flush, shutdown=client.shutdown, stats=stats)


def alertkit_http(url: str) -> Sdk:
    return _alertkit(f"{url}/api/v1/events")


def alertkit_pagerduty(url: str) -> Sdk:
    """Unpaced: by default the backend paces itself at PagerDuty's documented 120 events a minute
    per routing key (``rate_limit``), which would make this a measurement of that limit; the
    official client does not pace, so neither does this case."""
    from alertkit.backends.registry import create_backend

    backend = create_backend(f"pagerduty://{ROUTING_KEY}?endpoint={url}/v2/enqueue")
    backend.rate_limit = None  # type: ignore[misc]
    return _alertkit(backend)


def _redis_counter(url: str, queue_name: str) -> Callable[[], int]:
    import redis

    connection = redis.Redis.from_url(url)
    return lambda: int(connection.zcard(f"{queue_name}.keys"))


def alertkit_redis(url: str) -> Sdk:
    """``url`` is the Redis URL here: logs go to Chouette's ``chouette:logs:wrapped`` queue."""
    sdk = _alertkit(url)
    sdk.count = _redis_counter(url, "chouette:logs:wrapped")
    return sdk


#: The record attributes the dev branch's ``ChouetteLogHandler`` does not copy into a message.
_CHOUETTE_STANDARD_KEYS = (
    "name",
    "msg",
    "args",
    "levelname",
    "levelno",
    "pathname",
    "filename",
    "module",
    "exc_info",
    "exc_text",
    "stack_info",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "tags",
    "thread",
    "threadName",
    "processName",
    "process",
)


class ChouetteHandler(logging.Handler):
    """chouette-iot-client's way of writing one log message. Its PyPI release has no log handler;
    the dev branch's ``ChouetteLogHandler`` builds the message on the caller's thread (ISO date,
    tags, level, ``record.msg``, exception text, every non-standard record attribute) and hands
    it to the client's executor, whose storage writes it in one MULTI/EXEC round trip. This
    does the same steps, and stores through the released client's ``store_metric`` (the same
    ZADD + HSET transaction; ``timestamp`` is its score)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        from chouette_iot_client import ChouetteClient

        self.client = ChouetteClient
        self.exception_formatter = logging.Formatter()
        self.futures: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        from datetime import datetime, timezone

        tags = record.__dict__.get("tags", [])
        if isinstance(tags, dict):
            tags = [f"{key}:{value}" for key, value in tags.items()]
        message = {
            "date": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "ddsource": "bench",
            "ddtags": tags,
            "level": record.levelname,
            "message": {"msg": record.msg},
            "service": "bench",
        }
        if record.exc_info:
            message["exc_info"] = self.exception_formatter.formatException(record.exc_info)
        for name, value in record.__dict__.items():
            if name not in _CHOUETTE_STANDARD_KEYS:
                message[name] = value
        message["timestamp"] = record.created
        executor = self.client._get_executor()
        self.futures.append(executor.submit(self.client.storage.store_metric, message))


def chouette(url: str) -> Sdk:
    """chouette-iot-client against the same Redis (configured by ``REDIS_HOST``/``REDIS_PORT``)."""
    import os
    from concurrent.futures import wait
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    os.environ["REDIS_HOST"], os.environ["REDIS_PORT"] = parts.hostname or "", str(parts.port)
    logger = _logger()
    handler = ChouetteHandler()
    logger.addHandler(handler)

    def flush(timeout: float) -> bool:
        _, pending = wait(list(handler.futures), timeout)
        return not pending

    def shutdown(timeout: float) -> None:
        flush(timeout)
        handler.client._get_executor().shutdown(wait=False, cancel_futures=True)

    return Sdk(
        logger,
        flush=flush,
        shutdown=shutdown,
        count=_redis_counter(url, "chouette:metrics:raw"),
    )


def sentry(url: str) -> Sdk:
    """sentry-sdk with its defaults and the logging integration sending ERROR records as events.

    Breadcrumbs are off (``level=None``): with sentry's default (INFO records kept as
    breadcrumbs) every error event carries up to 100 earlier records as breadcrumbs and costs the
    caller milliseconds, which would make this comparison about breadcrumbs. A ``NullHandler``
    keeps the stdlib's last-resort handler from printing every record to stderr."""
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    port = url.rsplit(":", 1)[1]
    sentry_sdk.init(
        dsn=f"http://public@127.0.0.1:{port}/1",
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
    )
    logger = _logger()
    logger.addHandler(logging.NullHandler())
    return Sdk(
        logger,
        flush=sentry_sdk.flush,
        shutdown=lambda timeout: sentry_sdk.get_client().close(timeout=timeout),
    )


class PagerDutyHandler(logging.Handler):
    """The official ``pagerduty`` client's ``EventsApiV2Client.trigger`` behind a logging handler,
    written the way its README suggests using it: one synchronous call per record.

    The client accepts only ``https://`` base URLs; the sink speaks plain HTTP (as it does to
    alertkit and sentry-sdk), so the checked URL is set past its validation (``_url``)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(logging.ERROR)
        from pagerduty import EventsApiV2Client

        self.client = EventsApiV2Client(ROUTING_KEY)
        self.client._url = base_url
        self.source = socket.gethostname()
        self.failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.client.trigger(
                summary=self.format(record)[:1024],
                source=self.source,
                severity="error",
                custom_details={"logger": record.name},
            )
        except Exception:  # the handler must not raise into the application
            self.failed += 1


def pagerduty_sync(url: str) -> Sdk:
    logger = _logger()
    handler = PagerDutyHandler(url)
    logger.addHandler(handler)
    return Sdk(logger, stats=lambda: {"failed": handler.failed})


def pagerduty_queued(url: str) -> Sdk:
    """The same handler behind the stdlib's ``QueueHandler``, so the caller does not wait."""
    handler = PagerDutyHandler(url)
    sdk = _queued(_logger(), handler)
    sdk.stats = lambda: {"failed": handler.failed}
    return sdk


#: Cases whose destination is Redis (the sink's fault scripts do not apply to them).
REDIS_CASES = ("alertkit_redis", "chouette")

#: name -> (setup, label in the tables, the package it needs or None)
CASES: dict[str, tuple[Callable[[str], Sdk], str, str | None]] = {
    "filtered": (filtered, "record filtered out (logger level)", None),
    "null": (null, "`NullHandler`", None),
    "queue": (queue_handler, "`QueueHandler` + `QueueListener`, do-nothing handler", None),
    "stdlib_http": (stdlib_http, "`QueueHandler` -> stdlib `HTTPHandler`", None),
    "alertkit_http": (alertkit_http, "alertkit `AlertHandler` -> HTTP backend", "alertkit"),
    "alertkit_pagerduty": (
        alertkit_pagerduty,
        "alertkit `AlertHandler` -> PagerDuty backend",
        "alertkit",
    ),
    "alertkit_redis": (
        alertkit_redis,
        "alertkit `AlertHandler` -> Redis backend",
        "alertkit.backends.redis",
    ),
    "chouette": (
        chouette,
        "chouette-iot-client (one MULTI/EXEC per message)",
        "chouette_iot_client",
    ),
    "sentry": (sentry, "sentry-sdk logging integration", "sentry_sdk"),
    "pagerduty_sync": (pagerduty_sync, "`pagerduty` client in a handler", "pagerduty"),
    "pagerduty_queued": (
        pagerduty_queued,
        "`pagerduty` client behind `QueueHandler`",
        "pagerduty",
    ),
}
