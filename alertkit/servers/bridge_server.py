"""The bridge's HTTP server: waitress, hardened for a port open to the network.

Why waitress (the ``bridge`` extra) rather than the standard library's development server or
uvicorn: it is pure Python, serves the WSGI app ``create_app`` already returns, reads every
request completely in one event loop *before* a worker thread sees it (so slow or half-sent
requests hold no thread), and bounds what matters: worker ``threads``, ``connection_limit``, the
``backlog``, ``max_request_header_size`` and ``max_request_body_size`` (refused from the
Content-Length, before the body is read). uvicorn would need an ASGI rewrite of the app and an
event loop library for the same result.

What this module adds on top: a deadline for receiving a whole request (waitress only has an
inactivity timeout, which a client dripping one byte at a time never reaches), a pause instead of
a busy loop when ``accept()`` fails for lack of file descriptors, a connection limit that fits
the process's open-files limit, an access log that never shows a query string or an unknown path
(Guance sends the token as ``?token=``), and a stop that is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from alertkit.model.errors import ConfigError

log = logging.getLogger("alertkit.bridge")

#: File descriptors kept free for the rest of the process (pipeline sockets, spool, logs).
FD_RESERVE = 32
#: How long the listener rests after ``accept()`` failed (out of descriptors, mostly).
ACCEPT_PAUSE = 0.5

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Channel(HTTPChannel):
    """A connection that remembers when its current request began to arrive."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        before = self.request
        result: bool = super().received(data)
        if self.request is not None and self.request is not before:
            self.request_started = time.time()
        return result


class _Server(TcpWSGIServer):
    """waitress's TCP server with a request deadline and a rest after failed accepts."""

    channel_class = _Channel
    request_timeout = 10.0
    _resting_until = 0.0

    def maintenance(self, now: float) -> None:
        """Close idle channels (waitress) and those still receiving a request past the deadline."""
        super().maintenance(now)  # type: ignore[arg-type]  # the stub says int
        cutoff = now - self.request_timeout
        channels: dict[int, _Channel] = self.active_channels  # type: ignore[assignment]
        for channel in list(channels.values()):
            receiving = channel.request is not None and not channel.requests
            if receiving and channel.request_started < cutoff:
                channel.will_close = True

    def readable(self) -> bool:
        accepting: bool = super().readable()
        return accepting and time.monotonic() >= self._resting_until

    def handle_accept(self) -> None:
        """Accept one connection; out of file descriptors, rest instead of spinning on poll()."""
        try:
            pair = self.accept()
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS...: the listener stays readable
            self._resting_until = time.monotonic() + ACCEPT_PAUSE
            log.warning(
                "bridge: cannot accept a connection (%s); pausing %.1f s",
                exc.strerror or exc,
                ACCEPT_PAUSE,
            )
            return
        if pair is None:
            return
        conn, addr = pair
        try:
            self.set_socket_options(conn)
        except OSError:  # the peer left before we got to it
            conn.close()
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)  # type: ignore[attr-defined]


class BridgeServer:
    """The running server: ``serve_forever()`` in one thread, ``shutdown()`` from another.

    Attributes:
        server_address: ``(host, port)`` it listens on (the real port when asked for port 0).
        connection_limit: connections served at once (lowered to fit the open-files limit).
    """

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        *,
        threads: int,
        connection_limit: int,
        timeout: float,
        max_header_bytes: int,
        max_body_bytes: int,
        backlog: int = 1024,
        routes: frozenset[str] = frozenset(),
    ) -> None:
        self.connection_limit = _fit_open_files(connection_limit)
        adj = Adjustments(
            host=host,
            port=str(port),
            threads=threads,
            connection_limit=self.connection_limit,
            backlog=backlog,
            channel_timeout=int(max(1, timeout)),
            cleanup_interval=int(max(1, min(timeout / 2, 5))),
            max_request_header_size=max_header_bytes,
            max_request_body_size=max_body_bytes,
            asyncore_use_poll=True,  # select() fails past descriptor 1024
            log_socket_errors=False,  # a peer resetting its connection is not news
            ident="alertkit-bridge",
        )
        self._map: dict[int, Any] = {}
        self._threads = threads
        self._dispatcher = ThreadedTaskDispatcher()  # its threads start in serve_forever
        try:
            self._server = _Server(
                _access_logged(app, routes),
                map=self._map,
                dispatcher=self._dispatcher,
                adj=adj,
                sockinfo=adj.listen[0],  # type: ignore[arg-type]
            )
        except OSError as exc:
            wasyncore.close_all(self._map)  # the wake-up pipe and the unbound socket
            raise ConfigError(
                f"bridge: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._server.request_timeout = timeout
        port = self._server.effective_port  # type: ignore[attr-defined]
        self.server_address: tuple[str, int] = (host, int(port))
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 1.0) -> None:
        """Serve until :meth:`shutdown`; then close every connection and stop the threads."""
        self._dispatcher.set_thread_count(self._threads)
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=poll_interval, use_poll=True, map=self._map, count=1)
        finally:
            self._dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self._map)
            self._stopped.set()

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Ask ``serve_forever`` to return and wait for it (bounded); True once it has."""
        self._stop.set()
        if not self._stopped.is_set():
            # Wake the loop now rather than at its next poll; OSError: the loop saw the stop
            # first and closed the trigger already.
            with contextlib.suppress(OSError):
                self._server.trigger.pull_trigger()  # type: ignore[attr-defined]
        return self._stopped.wait(timeout)

    def server_close(self) -> None:
        """Close the listening socket if ``serve_forever`` never ran (idempotent)."""
        if not self._stopped.is_set():
            wasyncore.close_all(self._map)


def _fit_open_files(wanted: int) -> int:
    """``wanted``, or fewer so every connection (socket plus a possible spill file) fits under
    the soft open-files limit, leaving ``FD_RESERVE`` for the rest of the process."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError):  # not Linux: waitress's own limit applies
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    fit = max(1, (soft - used - FD_RESERVE) // 2)
    if fit < wanted:
        log.warning(
            "bridge: serving %d connections at once, not %d: the open-files limit is %d (ulimit -n)",
            fit,
            wanted,
            soft,
        )
    return min(wanted, fit)


def _access_logged(app: WSGIApp, routes: frozenset[str]) -> WSGIApp:
    """``app`` with one INFO line per request that never shows a secret: a query string is
    masked (Guance sends the token as ``?token=``) and a path other than ``routes`` is not shown
    (``/guance&token=...``, a typo for ``?``, would put the token in the path)."""

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        status: list[str] = []

        def recording(status_line: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            status.append(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, *exc)

        try:
            return app(environ, recording)
        finally:
            path = environ.get("PATH_INFO") or "/"
            log.info(
                '%s "%s %s%s" %s %.1fms',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD", "-"),
                path if path.rstrip("/") in routes else f"<other path, {len(path)} chars>",
                "?***" if environ.get("QUERY_STRING") else "",
                status[0] if status else "-",
                (time.monotonic() - started) * 1000,
            )

    return logged
