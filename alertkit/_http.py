"""The one HTTP layer every HTTP backend shares: pooled urllib3, timeouts, TLS verification on.

It also holds the status-code vocabulary that HTTP destinations have in common, so a backend only
writes the cases where its service differs (PagerDuty v1's 403, Telegram's ``retry_after``).
urllib3 is imported on first use, keeping ``import alertkit`` light.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from alertkit.outcomes import Delivered, Outcome, Rejected, RetryLater

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


class HttpTransport:
    """A keep-alive connection pool with timeouts, recreated after ``fork()``."""

    def __init__(self, *, connections: int = 4, timeout: float = 10.0, verify: bool = True) -> None:
        self.connections = max(1, connections)
        self.timeout = timeout
        self.verify = verify
        self._pool: urllib3.PoolManager | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _manager(self) -> urllib3.PoolManager:
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                import urllib3

                self._pid = os.getpid()
                self._pool = urllib3.PoolManager(
                    num_pools=4,
                    maxsize=self.connections,
                    block=False,
                    cert_reqs="CERT_REQUIRED" if self.verify else "CERT_NONE",
                    retries=False,
                    timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=self.timeout),
                )
            return self._pool

    def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
        """POST ``body``; return the response whatever its status.

        Raises:
            TransportError: no response came back.
        """
        import urllib3

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
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None


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
