"""What is current in a thread or asyncio task: one context variable for the scope and its trail.

Its value is a :class:`Frame`: the scope being served (an entered
:class:`~alertkit.capture.request.Scope`, or a pending one such as a web request), which carries
its own breadcrumb trail, made at its first crumb. Entering a request is one context switch, and a
request that records no crumb makes no trail: the current request, the current scope and the
current trail were three context variables, a third of what a trivial web request paid for the
integration.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any


class Frame:
    """Something current in a context: a scope, made or pending."""

    __slots__ = ("crumbs", "outer", "task")

    #: The frame's breadcrumb trail (see :mod:`alertkit.capture.breadcrumbs`), made at its first
    #: crumb; None until then.
    crumbs: Any
    #: The frame that was current when this one became current (None: none was).
    outer: Frame | None
    #: The asyncio task that made it current (None: a thread, or not asked): that task records
    #: into the frame's own trail, any other task into a copy of its own.
    task: object


current: ContextVar[Frame | None] = ContextVar("alertkit_scope", default=None)


def running_task() -> object:
    """The running asyncio task, or None (no event loop: asyncio need not even be imported)."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    loop = aio._get_running_loop()
    return None if loop is None else aio.current_task(loop)
