"""The relay: reads a Redis Stream of envelopes through a consumer group and delivers them.

Imported lazily: ``alertkit.relay.keys`` (the key names the stream backend shares) costs nothing
else, and ``from alertkit.relay import Relay`` imports the relay when it is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alertkit.relay.relay import Relay

_LAZY: dict[str, str] = {
    "Relay": "alertkit.relay.relay",
}

__all__ = ["Relay"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alertkit.relay' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
