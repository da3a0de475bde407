"""The one HTTP layer every HTTP backend shares: pooled urllib3, timeouts, TLS verification on.

It also holds the status-code vocabulary that HTTP destinations have in common, so a backend only
writes the cases where its service differs (PagerDuty v1's 403, Telegram's ``retry_after``).
urllib3 is imported by :func:`prepare` when a client with an HTTP backend is built, keeping
``import alertkit`` light and every import off the worker threads: an import on a worker thread
holds an import lock that a ``fork()`` at that moment would leave held forever in the child, and
urllib3's import takes the logging lock, which ``logging.config.dictConfig`` holds while it closes
handlers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from alertkit._forking import at_fork_in_child
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater

if TYPE_CHECKING:
    import urllib3

USER_AGENT = "alertkit-python/0.1"
_MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A finished HTTP exchange."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    origin: str = ""
    """``host:port`` that answered (never the path or query, which may hold a key), for reasons."""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class TransportError(Exception):
    """The request did not produce a response (refused, reset, timed out, TLS failure)."""


def prepare() -> Any:
    """Import what a request needs, on the thread that builds the client; returns urllib3.

    ``socket.getaddrinfo`` looks the ``idna`` codec up on its first call: that is an import too.
    """
    import urllib3
    import urllib3.connection
    import urllib3.exceptions

    "localhost".encode("idna")
    return urllib3


class HttpTransport:
    """A keep-alive connection pool with timeouts, recreated after ``fork()``."""

    def __init__(self, *, connections: int = 4, timeout: float = 10.0, verify: bool = True) -> None:
        self.connections = max(1, connections)
        self.timeout = timeout
        self.verify = verify
        self._urllib3: Any = prepare()  # a no-op when the client already did it
        self._pool: urllib3.PoolManager | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._closed = False
        _transports.add(self)

    def _after_fork(self) -> None:
        """In the child: a fresh lock (a worker may have held it at the fork), no parent sockets
        (shutting one down would cut the parent's connection)."""
        self._lock = threading.Lock()
        self._pool = None
        self._sockets = weakref.WeakSet()
        self._pid = os.getpid()

    def _pool_classes(self) -> dict[str, Any]:
        """urllib3's pool classes, with connections that record their socket for :meth:`close`."""
        urllib3 = self._urllib3
        transport = self
        plain: Any = urllib3.connection.HTTPConnection
        tls: Any = urllib3.connection.HTTPSConnection
        plain_pool: Any = urllib3.HTTPConnectionPool
        tls_pool: Any = urllib3.HTTPSConnectionPool

        class Connection(plain):  # type: ignore[misc]
            def connect(self) -> None:
                super().connect()
                transport._track(self.sock)

        class TlsConnection(tls):  # type: ignore[misc]
            def connect(self) -> None:
                super().connect()
                transport._track(self.sock)

        class Pool(plain_pool):  # type: ignore[misc]
            ConnectionCls = Connection

        class TlsPool(tls_pool):  # type: ignore[misc]
            ConnectionCls = TlsConnection

        return {"http": Pool, "https": TlsPool}

    def _track(self, sock: socket.socket) -> None:
        """Remember a new connection's socket; one that raced with :meth:`close` ends at once."""
        self._sockets.add(sock)
        if self._closed:
            _cut(sock)

    def _manager(self) -> urllib3.PoolManager:
        if self._closed:
            raise TransportError("the transport is closed (shutdown)")
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:  # only ever held to build the pool: no import, no I/O, no logging
            if self._pool is None or self._pid != os.getpid():
                urllib3 = self._urllib3
                self._pid = os.getpid()
                self._pool = urllib3.PoolManager(
                    num_pools=4,
                    maxsize=self.connections,
                    block=False,
                    cert_reqs="CERT_REQUIRED" if self.verify else "CERT_NONE",
                    retries=False,
                    timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=self.timeout),
                )
                self._pool.pool_classes_by_scheme = self._pool_classes()
            return self._pool

    def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
        """POST ``body``; return the response whatever its status.

        Raises:
            TransportError: no response came back.
        """
        urllib3 = self._urllib3
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        try:
            response = self._manager().request(
                "POST", url, body=body, headers=all_headers, redirect=False, preload_content=True
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(describe_error(exc, origin(url), self.timeout)) from exc
        return HttpResponse(
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.data or b"",
            origin=origin(url),
        )

    def close(self) -> None:
        """Close every connection, ending at once a request still waiting for its answer (the
        shutdown budget has run out for it); never waits for the lock a worker may hold."""
        self._closed = True
        pool, self._pool = self._pool, None
        for sock in list(self._sockets):
            _cut(sock)
        if pool is not None:
            pool.clear()


def _cut(sock: socket.socket) -> None:
    """Shut a connection down, waking a thread blocked reading it (the plain socket's shutdown,
    also for TLS: it does not touch the TLS state another thread is using)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_transports: weakref.WeakSet[HttpTransport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for transport in list(_transports):
        transport._after_fork()


at_fork_in_child(_after_fork_in_child)


def origin(url: str) -> str:
    """``host:port`` of ``url``: what a reason may name (no user info, path or query, where
    keys live)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or "?"
    except ValueError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_error(exc: BaseException, where: str, timeout: float) -> str:
    """The cause of a failed request in a few words ("connection refused to 127.0.0.1:1"),
    rather than urllib3's wrapper text (an object repr and a retry count)."""
    import errno
    import socket
    import ssl

    import urllib3

    inner: BaseException = exc
    for _ in range(5):  # urllib3 wraps the OS error in one or two layers
        nested = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nested, BaseException) or isinstance(inner, OSError):
            break
        inner = nested
    chain = [exc, inner]
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or (
        isinstance(inner, OSError) and inner.errno == errno.ECONNREFUSED
    ):
        return f"connection refused to {where}"
    if any(isinstance(e, urllib3.exceptions.NameResolutionError | socket.gaierror) for e in chain):
        return f"cannot resolve the host of {where}"
    if any(isinstance(e, urllib3.exceptions.ConnectTimeoutError) for e in chain):
        return f"no connection to {where} within {min(5.0, timeout):g}s"
    if any(isinstance(e, urllib3.exceptions.ReadTimeoutError | TimeoutError) for e in chain):
        return f"no answer from {where} within {timeout:g}s"
    if any(isinstance(e, ssl.SSLError | urllib3.exceptions.SSLError) for e in chain):
        return f"TLS error with {where}: {inner}"[:_MAX_REASON]
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return f"connection reset by {where}"
    if any(isinstance(e, urllib3.exceptions.ProtocolError) for e in chain):
        return f"connection to {where} broken: {type(inner).__name__}"
    return f"{type(inner).__name__} with {where}: {inner}"[:_MAX_REASON]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            from dateutil import parser as date_parser

            when = date_parser.parse(value)
        except (ValueError, OverflowError):
            return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def reason_from_body(response: HttpResponse) -> str:
    """A short human reason from an error response: JSON ``message``/``errors`` or the text."""
    import json

    text = response.text.strip()
    try:
        data: Any = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data[key]) for key in ("message", "error", "description") if data.get(key)]
        errors = data.get("errors")
        if errors:
            parts.append("; ".join(map(str, errors)) if isinstance(errors, list) else str(errors))
        if parts:
            text = ": ".join(parts)
    where = f" from {response.origin}" if response.origin else ""
    return f"HTTP {response.status}{where}" + (f": {text[:_MAX_REASON]}" if text else "")


def classify_response(response: HttpResponse) -> Outcome:
    """The common meaning of an HTTP status for an event API.

    2xx delivered; 408 and 429 retry (honouring ``Retry-After``); other 4xx rejected with the
    server's reason; 5xx retried.
    """
    status = response.status
    if 200 <= status < 300:
        return Delivered({"status": status})
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status in (408, 425, 429) or status >= 500:
        return RetryLater(reason_from_body(response), retry_after)
    return Rejected(reason_from_body(response))
