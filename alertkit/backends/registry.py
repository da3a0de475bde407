"""The backend registry: URL scheme to backend class, built-ins imported only when used.

Built-in backends are listed by module path so that ``import alertkit`` does not import redis-py or
urllib3; :func:`register` adds a custom backend class under its scheme(s).
"""

from __future__ import annotations

import importlib
from typing import Any

from alertkit.backends._redact import masked_url
from alertkit.backends.base import AdaptedBackend, Backend, BaseBackend
from alertkit.model.errors import ConfigError

_BUILTIN: dict[str, str] = {
    "http": "alertkit.backends.http:HttpBackend",
    "https": "alertkit.backends.http:HttpBackend",
    "local": "alertkit.backends.local:LocalBackend",
    "pagerduty": "alertkit.backends.pagerduty:PagerDutyBackend",
    "redis": "alertkit.backends.redis:RedisBackend",
    "rediss": "alertkit.backends.redis:RedisBackend",
    "redis-stream": "alertkit.backends.redis_stream:RedisStreamBackend",
    "rediss-stream": "alertkit.backends.redis_stream:RedisStreamBackend",
    "slack": "alertkit.backends.slack:SlackBackend",
    "smtp": "alertkit.backends.email:EmailBackend",
    "smtps": "alertkit.backends.email:EmailBackend",
    "tgram": "alertkit.backends.telegram:TelegramBackend",
    "whatsapp": "alertkit.backends.whatsapp:WhatsAppBackend",
}
_CUSTOM: dict[str, type[BaseBackend]] = {}


def register(cls: type[BaseBackend]) -> type[BaseBackend]:
    """Register a backend class under ``cls.scheme`` and ``cls.schemes``; usable as a decorator.

    Raises:
        ConfigError: the class declares no scheme.
    """
    names = {cls.scheme, *cls.schemes} - {""}
    if not names:
        raise ConfigError(f"{cls.__name__} declares no scheme")
    for scheme in names:
        _CUSTOM[scheme.lower()] = cls
    return cls


def known_schemes() -> list[str]:
    """Every scheme a backend URL may use."""
    return sorted({*_BUILTIN, *_CUSTOM})


def backend_class(scheme: str) -> type[BaseBackend]:
    """Return the class registered for ``scheme``.

    Raises:
        ConfigError: no backend answers to the scheme.
    """
    key = scheme.lower()
    if key in _CUSTOM:
        return _CUSTOM[key]
    target = _BUILTIN.get(key)
    if target is None:
        raise ConfigError(
            f"unknown backend scheme {scheme!r}; known schemes: {', '.join(known_schemes())}"
        )
    module_name, _, class_name = target.partition(":")
    cls: type[BaseBackend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_backend(spec: str | object, **overrides: Any) -> Backend:
    """Turn a URL string (``pagerduty://KEY``) or a backend object into a backend.

    An object that implements the whole :class:`~alertkit.backends.base.Backend` contract is
    returned as it is; one with only ``send`` and ``close`` is wrapped in
    :class:`~alertkit.backends.base.AdaptedBackend`.

    Raises:
        ConfigError: unknown scheme, malformed URL, or bad option values.
        TypeError: ``spec`` is neither a string nor a backend.
    """
    if isinstance(spec, str):
        scheme, sep, _ = spec.partition("://")
        if not sep or not scheme:
            raise ConfigError(
                f"backend URL {masked_url(spec)} has no scheme (expected scheme://...)"
            )
        return backend_class(scheme).from_url(spec, **overrides)
    if isinstance(spec, Backend):
        return spec
    if callable(getattr(spec, "send", None)) and callable(getattr(spec, "close", None)):
        return AdaptedBackend(spec)  # the rest of the contract from BaseBackend's defaults
    raise TypeError(
        "a backend must be a URL string or an object with send() and close(), "
        f"not {type(spec).__name__}"
    )
