"""Destinations. One module per backend behind :class:`~alertkit.backends.base.Backend`.

Backend classes are imported lazily (``alertkit.backends.PagerDutyBackend`` imports its module on
first access), so optional dependencies cost nothing until used.
"""

from __future__ import annotations

import importlib
from typing import Any

from alertkit.backends.base import Backend, BaseBackend, ClientContext
from alertkit.backends.registry import create_backend, known_schemes, register

_LAZY: dict[str, str] = {
    "HttpBackend": "alertkit.backends.http",
    "LocalBackend": "alertkit.backends.local",
    "PagerDutyBackend": "alertkit.backends.pagerduty",
    "EmailBackend": "alertkit.backends.email",
    "RedisBackend": "alertkit.backends.redis",
    "RedisStreamBackend": "alertkit.backends.redis_stream",
    "SlackBackend": "alertkit.backends.slack",
    "TelegramBackend": "alertkit.backends.telegram",
    "WhatsAppBackend": "alertkit.backends.whatsapp",
}

__all__ = [
    "Backend",
    "BaseBackend",
    "ClientContext",
    "EmailBackend",
    "HttpBackend",
    "LocalBackend",
    "PagerDutyBackend",
    "RedisBackend",
    "RedisStreamBackend",
    "SlackBackend",
    "TelegramBackend",
    "WhatsAppBackend",
    "create_backend",
    "known_schemes",
    "register",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alertkit.backends' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
