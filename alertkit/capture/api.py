"""The default client behind the module-level helpers (``alertkit.init``)."""

from __future__ import annotations

import threading
from typing import Any

from alertkit.capture.client import Client

_default: Client | None = None
_lock = threading.Lock()


def init(**kwargs: Any) -> Client:
    """Create the default client from ``Client`` keyword arguments, replacing any earlier one.

    The earlier default client, if any, is shut down first (bounded by its timeout).
    """
    global _default
    client = Client(**kwargs)
    with _lock:
        previous, _default = _default, client
    if previous is not None:
        previous.shutdown()
    return client


def get_client() -> Client:
    """The default client; made with default options (env fallbacks apply) on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default
