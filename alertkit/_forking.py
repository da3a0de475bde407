"""Fork safety: what a forked child must renew before it uses alertkit.

A ``fork()`` copies every lock in the state it was in, but only the forking thread: a lock that a
pipeline thread held at that moment stays held in the child forever, and the first event there
would wait for it. Each module that owns locks renews them with ``os.register_at_fork``; this
helper renews the locks, conditions and events an object holds in its attributes.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK_TYPES: tuple[type, ...] = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Event,
)


def renew_locks(*objects: Any) -> None:
    """In a forked child: reset every lock, condition and event held by ``objects`` (in place,
    so that everything referring to them sees the reset one), unlocked and without waiters."""
    for obj in objects:
        if obj is None:
            continue
        for value in list(getattr(obj, "__dict__", {}).values()):
            if isinstance(value, _LOCK_TYPES):
                lock: Any = value
                lock._at_fork_reinit()  # what threading and logging do for their own locks
