"""Keep secrets that travel in a URL out of urllib3's own log records.

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

_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager")


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
