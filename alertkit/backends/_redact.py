"""Keep secrets that travel in a URL out of urllib3's log records and out of error messages.

:func:`masked_url` is how a configuration error shows the URL it is about: the error must say
where the mistake is without printing the password next to it.

A Slack webhook's path and a Telegram bot token are part of the request URL, and urllib3 logs every
request line (``"POST /bot123:ABC/sendMessage HTTP/1.1" 200``) at DEBUG on
``urllib3.connectionpool``. An application that turns on DEBUG logging would write the secret to its
logs. Backends with such secrets call :func:`redact_in_library_logs`; a filter on urllib3's loggers
then passes each record through their ``mask()``. The filter costs nothing unless those loggers are
enabled at DEBUG, because logging checks the level before it builds a record.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Protocol

_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "apprise")
_MASK = "****"  # the backends' mask (``alertkit.backends.base.MASK``)


def masked_url(url: object, *, keep_path: bool = True) -> str:
    """``url`` quoted for an error message, with whatever could be a credential masked.

    Masked: the user info (the user name too: WhatsApp's is a token), a "port" that is not a
    number (a password whose ``@`` is missing, or that holds a ``/`` that ended the host early),
    every query value, and the path unless ``keep_path`` (Slack's webhook path is its secret).
    Parses by hand: the URL is malformed, so ``urlsplit`` may be what failed on it.
    """
    if not isinstance(url, str):
        return f"a {type(url).__name__}"
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return f"'{_MASK}' ({len(url)} characters)"
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, query_at)
    userinfo = f"{_MASK}@" if at >= 0 else ""
    rest = rest[at + 1 :]
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    slash = rest.find("/", 0, query_at)
    host_end = slash if slash >= 0 else query_at
    host, path, query = rest[:host_end], rest[host_end:query_at], rest[query_at:]
    name, colon, port = host.rpartition(":")
    if colon and not port.isdigit() and not port.endswith("]"):
        host = f"{name}:{_MASK}"
    if path and not keep_path:
        path = f"/{_MASK}"
    if query:
        pieces = [
            piece.partition("=")[0] + ("=" + _MASK if "=" in piece else "")
            for piece in query[1:].replace("#", "&").split("&")
        ]
        query = query[0] + "&".join(pieces)
    return repr(f"{scheme}://{userinfo}{host}{path}{query}")


class _Masking(Protocol):
    def mask(self, text: str) -> str: ...


_backends: weakref.WeakSet[_Masking] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False


class _RedactFilter(logging.Filter):
    """Rewrites a record whose message holds a registered backend's secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        backends = list(_backends)
        if not backends:
            return True
        try:
            text = record.getMessage()
            masked = text
            for backend in backends:
                masked = backend.mask(masked)
        except Exception:  # a log filter must never break the application's logging
            return True
        if masked != text:
            record.msg = masked
            record.args = None
        return True


def redact_in_library_logs(backend: _Masking) -> None:
    """Mask ``backend``'s secrets in urllib3's log records for as long as the backend lives."""
    global _installed
    with _lock:
        _backends.add(backend)
        if not _installed:
            for name in _LOGGERS:
                logging.getLogger(name).addFilter(_RedactFilter())
            _installed = True
