"""Every client's end: shut down at interpreter exit, side by side, and renewed after ``fork()``.

A client registers here when it is made (:func:`track`); this module keeps clients weakly, so an
unused client is still collected. ``alertkit.capture.client`` installs the two hooks when it is
imported, after the pipeline's own fork hooks, so that a child renews the pipelines first.

A ``multiprocessing`` child never runs ``atexit`` (the ``fork`` and ``forkserver`` start methods
end it with ``os._exit``), so what it logged would die with it. Its exit does run
``multiprocessing.util`` finalizers, so in such a child the same shutdown is registered as a
:class:`multiprocessing.util.Finalize` (:func:`_exit_with_process`): the child delivers, or
spools, what it accepted before it exits, within its shutdown budget, with no setup. Each child
registers it once ``multiprocessing`` has set it up (its ``_after_fork`` clears the finalizers it
inherited), and only when ``multiprocessing`` is already imported: alertkit never imports it.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from typing import Protocol

from alertkit.guard import capture_internal_exceptions


class _Pipeline(Protocol):
    def pending(self) -> int:
        """Events accepted and not yet settled."""
        ...


class Closable(Protocol):
    """What exit and fork handling need of a client (:class:`alertkit.Client`)."""

    shutdown_timeout: float

    @property
    def pipeline(self) -> _Pipeline:
        """The client's pipeline (how many events it still holds)."""
        ...

    def shutdown(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop."""
        ...

    def after_fork(self) -> None:
        """Make the client usable in a forked child."""
        ...


_live_clients: weakref.WeakSet[Closable] = weakref.WeakSet()
_all_clients: weakref.WeakSet[Closable] = weakref.WeakSet()


def track(client: Closable, *, at_exit: bool) -> None:
    """Renew ``client`` after a fork; with ``at_exit``, shut it down at interpreter exit (or at
    a ``multiprocessing`` child's exit, which skips ``atexit``)."""
    if at_exit:
        _live_clients.add(client)
        _exit_with_process()
    _all_clients.add(client)


def shut_down(client: Closable) -> None:
    """``client`` has shut down: nothing left to do for it at exit."""
    _live_clients.discard(client)


def shuts_down_at_exit(client: object) -> bool:
    """True while ``client`` will be shut down (and so flushed) at interpreter exit."""
    return client in _live_clients


def shutdown_all_at_exit() -> None:
    """Shut down every client still running, each within its own budget."""
    clients = list(_live_clients)
    if not clients:
        return
    if len(clients) == 1:
        with capture_internal_exceptions():
            clients[0].shutdown()
        sys.stderr.flush()
        return
    # Side by side, so that one hanging destination cannot eat every other client's budget; each
    # gives up a little earlier, as their final spooling and closing compete for the machine.
    early = _EXIT_SHARE * len(clients)
    budget_end = time.monotonic() + max(c.shutdown_timeout for c in clients)
    threads = [
        threading.Thread(
            target=_shutdown_quietly,
            args=(c, max(0.0, c.shutdown_timeout - early)),
            name="alertkit-exit",
            daemon=True,
        )
        for c in clients
    ]
    started: list[threading.Thread] = []
    for thread in threads:
        try:
            thread.start()
        except RuntimeError:  # Python 3.12.0-3.12.1 start no thread at exit: one after another
            _shutdown_in_turn(clients[len(started) :], budget_end)
            break
        started.append(thread)
    for thread in started:
        thread.join(max(0.0, budget_end + _EXIT_MARGIN - time.monotonic()))
    _announce_unsettled(clients)
    sys.stderr.flush()


def _announce_unsettled(clients: list[Closable]) -> None:
    """Say what is still unsettled once the exit stops waiting: the interpreter ends the threads
    that hold it (an ``on_drop`` hook that does not return, a give-up slower than its reserve),
    and an event must not vanish without a word."""
    with capture_internal_exceptions():
        unsettled = sum(client.pipeline.pending() for client in clients)
        if unsettled:
            sys.stderr.write(
                f"alertkit: {unsettled} event(s) not settled when the exit's shutdown budget ran"
                " out (their delivery, spooling or a hook of yours was still running): they may"
                " be lost\n"
            )


def _shutdown_in_turn(clients: list[Closable], budget_end: float) -> None:
    """Shut ``clients`` down without a thread of their own (Python 3.12.0-3.12.1 start none at
    exit): first wait while every client delivers on its own running threads, side by side,
    until nothing is left or only the time to give up on what is left remains (about
    :data:`_GIVE_UP_COST` a busy client); then shut each down in turn, idle ones first, with an
    equal share of what is left: what is still in flight is spooled, or dropped and counted."""
    while True:
        busy = sum(1 for c in clients if c.pipeline.pending())
        if not busy or time.monotonic() >= budget_end - _GIVE_UP_COST * (busy + 1):
            break
        time.sleep(0.01)
    clients = sorted(clients, key=lambda client: client.pipeline.pending())
    for index, client in enumerate(clients):
        share = max(0.0, budget_end - time.monotonic()) / (len(clients) - index)
        _shutdown_quietly(client, min(client.shutdown_timeout, share))


#: Per client shut down side by side at exit: how much earlier each gives up on what is left.
#: Their final spool writes queue for one file's write lock: about 20 ms each on a loaded
#: 2-CPU machine, where 4 ms left 50 retired clients' last writes unfinished at the deadline.
_EXIT_SHARE = 0.02
#: How long past the largest budget the exit waits for clients shut down side by side.
_EXIT_MARGIN = 0.1
#: What shutting down a busy client costs when it gives up at once (cut its requests, spool).
_GIVE_UP_COST = 0.01


def _shutdown_quietly(client: Closable, budget: float) -> None:
    with capture_internal_exceptions():
        client.shutdown(budget)


def after_fork_in_child() -> None:
    """Renew every client in a forked child; in a ``multiprocessing`` child, shut them down
    when it exits."""
    for client in list(_all_clients):
        client.after_fork()
    if _live_clients:
        _exit_with_process()


class _Token:
    """What ``multiprocessing.util.register_after_fork`` keys our hook by (kept alive here)."""


_TOKEN = _Token()
#: Our finalizer runs before multiprocessing's own (its queues close at 10, managers at 0).
_EXIT_PRIORITY = 50
_finalizer: object | None = None
_hooked = False  # our after-fork hook is in multiprocessing's registry (children inherit both)


def _exit_with_process() -> None:
    """In a ``multiprocessing`` child, register :func:`shutdown_all_at_exit` to run when the
    child exits; and, in any process using ``multiprocessing``, ask for that again right after
    its ``_after_fork`` (which drops the finalizers registered before it)."""
    util = sys.modules.get("multiprocessing.util")
    process = sys.modules.get("multiprocessing.process")
    if util is None or process is None:
        return  # no multiprocessing here: nothing to register, and nothing imported for it
    global _hooked
    with capture_internal_exceptions():
        if not _hooked:
            util.register_after_fork(_TOKEN, _register_finalizer)
            _hooked = True
        _register_finalizer(_TOKEN)


def _register_finalizer(_: object) -> None:
    """Once per child process: shut every client down when ``multiprocessing`` ends it."""
    global _finalizer
    util = sys.modules["multiprocessing.util"]
    process = sys.modules["multiprocessing.process"]
    if process.parent_process() is None:
        return  # the main process: atexit shuts the clients down, after its children end
    if _finalizer is not None and _finalizer.still_active():  # type: ignore[attr-defined]
        return
    _finalizer = util.Finalize(None, shutdown_all_at_exit, exitpriority=_EXIT_PRIORITY)
