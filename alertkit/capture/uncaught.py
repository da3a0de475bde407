"""Uncaught exceptions: the interpreter's last-resort hooks report to the clients that ask.

Four *parts*, each a hook the interpreter (or an event loop) calls when nobody else handled an
exception; ``Client(capture_uncaught=...)`` names the ones a client wants (``alertkit.init``
asks for all of them):

=============  ====================================================  ========
part           hook                                                  level
=============  ====================================================  ========
``excepthook`` ``sys.excepthook``: the exception that ends the        fatal
               program (``KeyboardInterrupt``, ``SystemExit`` not)
``threading``  ``threading.excepthook``: the exception that ends a    error
               thread (the event names the thread)
``asyncio``    the running loop's exception handler, which also       error
               receives a task's exception that was never retrieved
``unraisable`` ``sys.unraisablehook``: exceptions in ``__del__``,     warning
               weakref callbacks, finalizers
=============  ====================================================  ========

Each hook is installed once per process however many clients ask (a second install adds a
subscriber, never a second report) and reports to every client subscribed to its part. The hook it
replaced is always called afterwards, so the traceback still prints; whatever goes wrong in
alertkit's part is swallowed by the guard and never replaces the application's traceback. When the
last client leaves (``Client.shutdown()`` / ``uninstall()``), the previous hook is put back, unless
someone installed theirs on top since: then ours stays in their chain, passing calls through.

The ``fatal`` event of ``sys.excepthook`` is queued; the interpreter then exits and the client's
exit handler delivers it within ``shutdown_timeout`` (or spools it). A client made with
``register_atexit=False`` has no exit handler: the hook itself waits up to ``shutdown_timeout``.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from alertkit.capture import lifetime
from alertkit.capture.events import was_reported
from alertkit.capture.submit import Submitter
from alertkit.guard import capture_internal_exceptions
from alertkit.model.stacktrace import exception_type_name, format_exception_text, safe_str

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Future

    from alertkit.delivery.pipeline import Results
    from alertkit.model.event import AppEvent, Envelope

__all__ = ["PARTS", "install", "install_loop", "parse_parts", "uninstall", "uninstall_loop"]

#: Every part ``capture_uncaught`` can name.
PARTS: frozenset[str] = frozenset({"excepthook", "threading", "asyncio", "unraisable"})

#: Exceptions that end a program on purpose: never reported.
_NOT_ERRORS = (KeyboardInterrupt, SystemExit)
#: The longest text kept of an object's repr (the unraisable's object, an asyncio handle).
_MAX_REPR = 500


class Reporter(Submitter, Protocol):
    """What a hook needs of a client (:class:`alertkit.Client`): the submit interface (events
    and envelopes with the client's defaults), and sending and waiting within its budget."""

    shutdown_timeout: float

    def send_event_async(self, event: AppEvent | Envelope) -> Future[Results]:
        """Queue the event for every backend."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for what is queued."""
        ...


def parse_parts(value: Any) -> frozenset[str]:
    """The parts a ``capture_uncaught`` value names: True all, False (or None) none, else a
    collection of part names.

    Raises:
        TypeError: not a bool or a collection of strings.
        ValueError: an unknown part name.
    """
    if value is None or value is False:
        return frozenset()
    if value is True:
        return PARTS
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise TypeError(
            "capture_uncaught must be True, False or a set of parts such as "
            f"{{'excepthook', 'threading'}}, not {type(value).__name__}"
        )
    parts = frozenset(value)
    unknown = sorted(map(repr, parts - PARTS))
    if unknown:
        raise ValueError(
            f"capture_uncaught: unknown part {', '.join(unknown)}; "
            f"the parts are {', '.join(sorted(PARTS))}"
        )
    return parts


# -- who listens -----------------------------------------------------------------------------

_lock = threading.RLock()
#: part -> the clients listening, by identity. Held strongly: a client that asked for the hooks is
#: in use until it shuts down (at exit at the latest), even if the application kept no reference.
_subscribers: dict[str, dict[int, Reporter]] = {part: {} for part in PARTS}


def _listeners(part: str) -> list[Reporter]:
    with _lock:
        return list(_subscribers[part].values())


def _report(part: str, build: Callable[[Reporter], Envelope | None]) -> list[Reporter]:
    """Send the event ``build`` makes to every client subscribed to ``part``; the clients."""
    clients = _listeners(part)
    for client in clients:
        with capture_internal_exceptions():
            envelope = build(client)
            if envelope is not None:
                client.send_event_async(envelope)
    return clients


def _envelope(
    client: Reporter,
    level: str,
    exc: BaseException | None,
    tb: TracebackType | None,
    details: dict[str, Any],
    *,
    event_type: str,
    message: str,
) -> Envelope:
    """The event of an exception, built now: the hook's arguments (frames, the dying object)
    must not outlive the hook. ``event_type``/``message`` serve when there is no exception."""
    if not isinstance(exc, BaseException):
        event = client.create_new_app_event(level, event_type=event_type, event_message=message)
        return client.envelope_for(event, details=details)
    info = (type(exc), exc, tb)
    event = client.create_new_app_event(level, exc_info=info)
    return client.envelope_for(event, details=details, exc_text=format_exception_text(info))


def _is_error(exc_type: Any) -> bool:
    return isinstance(exc_type, type) and not issubclass(exc_type, _NOT_ERRORS)


# -- sys.excepthook ----------------------------------------------------------------------------


class _Hook:
    """One installed hook: ours, and the one it replaced (always called after ours).

    ``active`` goes False when ours was uninstalled while another hook sat on top of it: it
    stays in that chain, passing calls through without reporting.
    """

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.active = True


class _ExceptHook(_Hook):
    def __call__(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> Any:
        clients: list[Reporter] = []
        try:
            if self.active and _is_error(exc_type) and not was_reported(exc):
                details = {"mechanism": "sys.excepthook"}
                name = exception_type_name(exc_type)
                clients = _report(
                    "excepthook",
                    lambda c: _envelope(
                        c, "fatal", exc, tb, details, event_type=name, message=name
                    ),
                )
        finally:
            result = self.previous(exc_type, exc, tb)  # the traceback prints as before
        for client in clients:
            with capture_internal_exceptions():
                if not lifetime.shuts_down_at_exit(client):  # nobody else will deliver it
                    client.flush(client.shutdown_timeout)
        return result


class _ThreadingHook(_Hook):
    def __call__(self, args: Any) -> Any:
        try:
            exc_type = args.exc_type
            if self.active and _is_error(exc_type) and not was_reported(args.exc_value):
                thread = args.thread
                name = safe_str(thread.name) if thread is not None else "unknown"
                exc, tb = args.exc_value, args.exc_traceback
                kind = exception_type_name(exc_type)
                details = {"mechanism": "threading.excepthook", "thread": name}
                _report(
                    "threading",
                    lambda c: _envelope(
                        c, "error", exc, tb, details, event_type=kind, message=f"thread {name}"
                    ),
                )
        finally:
            result = self.previous(args)
        return result


class _UnraisableHook(_Hook):
    def __call__(self, unraisable: Any) -> Any:
        try:
            if self.active:
                _report("unraisable", lambda c: _unraisable_envelope(c, unraisable))
        finally:
            result = self.previous(unraisable)
        return result


def _unraisable_envelope(client: Reporter, unraisable: Any) -> Envelope:
    # The object may be being finalized: only its repr is kept, never the object.
    where = safe_str(unraisable.err_msg or "Exception ignored in")
    obj = unraisable.object
    if obj is not None:
        where = f"{where}: {_short_repr(obj)}"
    details = {"mechanism": "sys.unraisablehook", "where": where}
    kind = unraisable.exc_type
    return _envelope(
        client,
        "warning",
        unraisable.exc_value,
        unraisable.exc_traceback,
        details,
        event_type=exception_type_name(kind) if isinstance(kind, type) else "unraisable",
        message=where,
    )


def _short_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 1] + "…"


_HOOKS: dict[str, tuple[Any, str, type[_Hook]]] = {
    "excepthook": (sys, "excepthook", _ExceptHook),
    "threading": (threading, "excepthook", _ThreadingHook),
    "unraisable": (sys, "unraisablehook", _UnraisableHook),
}
_installed: dict[str, _Hook] = {}


# -- asyncio -----------------------------------------------------------------------------------


class _LoopHandler(_Hook):
    """A loop's exception handler: ours, then the one it replaced (or the loop's default)."""

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        try:
            exc = context.get("exception")
            cancelled = sys.modules["asyncio"].CancelledError  # a loop runs: asyncio is loaded
            if (
                self.active
                and not isinstance(exc, (*_NOT_ERRORS, cancelled))
                and not (isinstance(exc, BaseException) and was_reported(exc))
            ):
                _report("asyncio", lambda c: _loop_envelope(c, context))
        finally:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)


def _loop_envelope(client: Reporter, context: dict[str, Any]) -> Envelope:
    message = safe_str(context.get("message") or "Unhandled exception in event loop")
    details: dict[str, Any] = {"mechanism": "asyncio", "asyncio_message": message}
    for key in ("task", "future", "handle"):  # what failed, as text: never the object
        if context.get(key) is not None:
            details[key] = _short_repr(context[key])
    exc = context.get("exception")
    tb = exc.__traceback__ if isinstance(exc, BaseException) else None
    return _envelope(client, "error", exc, tb, details, event_type="asyncio", message=message)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopHandler] = (
    weakref.WeakKeyDictionary()
)


def install_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Route ``loop``'s exception handler (and so its never-retrieved task exceptions) to the
    clients subscribed to the ``asyncio`` part; once per loop."""
    with _lock:
        ours = _loops.get(loop)
        current = loop.get_exception_handler()
        if ours is not None:
            if current is ours:
                return
            ours.active = False  # replaced since: it may sit in another handler's chain
        handler = _LoopHandler(current)
        loop.set_exception_handler(handler)
        _loops[loop] = handler


def uninstall_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Put back the handler ``loop`` had before :func:`install_loop`, if ours is still its."""
    with _lock:
        ours = _loops.pop(loop, None)
        if ours is None:
            return
        if not loop.is_closed() and loop.get_exception_handler() is ours:
            loop.set_exception_handler(ours.previous)
        else:
            ours.active = False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread; asyncio is not imported for it (a program that never
    imported asyncio runs no loop)."""
    module = sys.modules.get("asyncio")
    if module is None:
        return None
    try:
        loop: asyncio.AbstractEventLoop = module.get_running_loop()
    except RuntimeError:
        return None
    return loop


# -- install / uninstall ---------------------------------------------------------------------


def install(client: Reporter, parts: Iterable[str] = PARTS) -> None:
    """Subscribe ``client`` to ``parts``, installing each part's hook if it is not in place.

    ``asyncio``: installed on the loop running in this thread, if any (else see
    :func:`alertkit.integrations.asyncio.install`).
    """
    wanted = parse_parts(frozenset(parts))
    with _lock:
        for part in wanted:
            _subscribers[part][id(client)] = client
            if part == "asyncio":
                loop = _running_loop()
                if loop is not None:
                    install_loop(loop)
                continue
            owner, name, kind = _HOOKS[part]
            current = getattr(owner, name)
            stale = _installed.get(part)
            if stale is not None and current is stale:
                continue  # ours is in place: one hook, one report per exception
            if stale is not None:  # replaced since: it may sit in another chain, reporting
                stale.active = False
            _installed[part] = hook = kind(current)
            setattr(owner, name, hook)


def uninstall(client: Reporter | None = None) -> None:
    """Unsubscribe ``client`` (None: every client); a hook nobody listens to any more is replaced
    by the one it replaced, when it is still the one in place."""
    with _lock:
        for part in PARTS:
            if client is None:
                _subscribers[part].clear()
            else:
                _subscribers[part].pop(id(client), None)
            if _subscribers[part]:
                continue
            if part == "asyncio":
                for loop in list(_loops):
                    uninstall_loop(loop)
                continue
            hook = _installed.get(part)
            if hook is None:
                continue
            owner, name, _ = _HOOKS[part]
            del _installed[part]
            if getattr(owner, name) is hook:
                setattr(owner, name, hook.previous)
            else:  # another hook sits on top and may call ours: it stays, passing calls through
                hook.active = False


def installed(part: str) -> bool:
    """True while ``part``'s hook is in place with at least one client listening."""
    with _lock:
        if not _subscribers[part]:
            return False
        if part == "asyncio":
            return bool(_loops)
        return part in _installed
