"""Fork safety: what a forked child must renew before it uses alertkit.

A ``fork()`` copies every lock in the state it was in, but only the forking thread: a lock that a
pipeline thread held at that moment stays held in the child forever, and the first event there
would wait for it. Each module that owns locks or threads registers what renews them with
:func:`at_fork_in_child` (run from ``os.register_at_fork``, in registration order);
:func:`renew_locks` renews the locks, conditions and events an object holds in its attributes.

uWSGI forks its workers from C without Python's fork hooks (unless ``--py-call-uwsgi-fork-hooks``):
a master that sent an event before forking would leave workers whose pipeline waits for threads
that do not exist there, and every event would be lost silently. :func:`watch_uwsgi_forks` chains
uWSGI's own ``post_fork_hook`` to run the same hooks in such a worker.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

_child_hooks: list[Callable[[], None]] = []
_pid = os.getpid()  # the process the hooks last ran in (or that imported this module)


def at_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every forked child, after the hooks registered before it."""
    _child_hooks.append(hook)


def _run_child_hooks() -> None:
    global _pid
    _pid = os.getpid()
    for hook in list(_child_hooks):
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_child_hooks)


def renew_if_forked() -> bool:
    """Run the child hooks if this process was forked without them; True if it was."""
    if _pid == os.getpid():
        return False
    _run_child_hooks()
    return True


_UWSGI_MARK = "_alertkit_fork_hook"


def watch_uwsgi_forks() -> None:
    """Inside uWSGI, renew alertkit in each worker it forks, whether or not uWSGI runs Python's
    fork hooks (then this finds nothing to do). Outside uWSGI it does nothing."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return
    previous = getattr(uwsgi, "post_fork_hook", None)
    if previous is None or not getattr(previous, _UWSGI_MARK, False):

        def post_fork_hook() -> None:
            renew_if_forked()
            if previous is not None:
                previous()

        setattr(post_fork_hook, _UWSGI_MARK, True)
        setattr(uwsgi, "post_fork_hook", post_fork_hook)  # noqa: B010 (a module uWSGI made)
    decorators = sys.modules.get("uwsgidecorators")  # it owns post_fork_hook when imported
    chain = getattr(decorators, "postfork_chain", None)
    if isinstance(chain, list) and renew_if_forked not in chain:
        chain.insert(0, renew_if_forked)


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
