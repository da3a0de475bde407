"""What is current in a thread or asyncio task: one context variable for the scope and its trail.

Its value is a :class:`Frame`: the scope being served (an entered
:class:`~alertkit.capture.request.Scope`, or a pending one such as a web request), which carries
its own breadcrumb trail, made at its first crumb. Entering a scope is one context switch, and a
request that records no crumb makes no trail (the current request, the current scope and the
current trail were three context variables, a third of what a trivial web request paid for the
integration). A framework that keeps its requests current itself (Flask's request context, the
thread serving a sync Django view) lets alertkit find the request there instead
(:data:`FINDERS`): no switch at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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
#: ``current.get``, bound once for the hot paths elsewhere: Python 3.11 calls a method of an
#: imported name through a plain attribute look-up, which makes a bound method object per call.
get_current = current.get

#: Where a framework keeps its own request context (Flask), the frame of a request found through
#: it, for a context in which no frame was made current: consulted in order, each returning the
#: frame or None. A request found this way costs no context switch at all (see
#: :mod:`alertkit.integrations.flask`). Empty unless an integration added one.
FINDERS: list[Callable[[], Frame | None]] = []


def current_frame() -> Frame | None:
    """The current frame: the one made current in this context, else one a finder knows."""
    frame = current.get()
    if frame is None and FINDERS:
        return find_frame()
    return frame


def find_frame() -> Frame | None:
    """What :func:`current_frame` consults when no frame was made current: the first frame a
    finder knows (a hot path reads :data:`current` itself and checks :data:`FINDERS` first)."""
    for find in FINDERS:
        frame = find()
        if frame is not None:
            return frame
    return None


def running_task() -> object:
    """The running asyncio task, or None (no event loop: asyncio need not even be imported)."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    loop = aio._get_running_loop()
    return None if loop is None else aio.current_task(loop)
