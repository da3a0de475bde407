"""One guard around everything that must never raise into the application.

Used around ``AlertHandler.handle``, every queued send, and every user callback: it logs the error to
alertkit's own logger (which the handler ignores, so no feedback loop) and swallows it. Tests install
a hook through :func:`add_internal_error_hook` so that a swallowed error still fails them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("alertkit.internal")

_hooks: list[Callable[[BaseException], None]] = []


def add_internal_error_hook(hook: Callable[[BaseException], None]) -> Callable[[], None]:
    """Call ``hook`` with every swallowed internal error; returns a function that removes it."""
    _hooks.append(hook)
    return lambda: _hooks.remove(hook) if hook in _hooks else None


@contextmanager
def capture_internal_exceptions() -> Iterator[None]:
    """Swallow any exception in the block, after logging it once to ``alertkit.internal``."""
    try:
        yield
    except Exception as exc:
        report_internal_error(exc)


def report_internal_error(exc: BaseException) -> None:
    """Log an internal error and tell the hooks; never raises."""
    try:
        log.warning(
            "alertkit internal error (swallowed): %s: %s", type(exc).__name__, exc, exc_info=exc
        )
        for hook in list(_hooks):
            hook(exc)
    except Exception:  # the guard itself must never raise
        pass
