"""A scriptable HTTP server on 127.0.0.1 standing in for an event API, PagerDuty, Slack ...

Each request is recorded (method, path, headers, body); the reply comes from a script: a list of
``Reply`` consumed in order (the last one repeats), or a function of the request. A reply can
hang (accept and never answer, until the server stops or 30 s pass) or reset the connection.
It serves alertkit's own tests and the backend contract (:mod:`alertkit.testing.contract`), so a
custom backend's author tests against the same scripted failures.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    reset: bool = False
    reset_mid_response: bool = False
    delay: float = 0.0


Script = Callable[[Request], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        reply = self.server.owner.reply_for(request)
        if reply.hang:
            self.server.owner.release.wait(30)
            self.close_connection = True
            return
        if reply.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if reply.delay:
            self.server.owner.release.wait(reply.delay)
        if reply.reset_mid_response:  # half a status line, then RST
            self.wfile.write(b"HTTP/1.1 20")
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        payload = reply.body
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_POST  # noqa: N815 - the name http.server dispatches PUT to


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a real server's backlog, not socketserver's 5
    allow_reuse_address = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-reply (a timeout, a shutdown) is what fault tests script.

        socketserver would print its traceback to stderr, where it interleaves with the lines
        the tests read; anything else is still printed.
        """
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ScriptedServer:
    """Start with ``with ScriptedServer() as server:``; ``server.url`` is its base URL."""

    def __init__(self, script: list[Reply] | Script | None = None, port: int = 0) -> None:
        self.requests: list[Request] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.set_script(script or [Reply()])
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def set_script(self, script: list[Reply] | Script) -> None:
        with self._lock:
            self._script = script
            self._served = 0

    def reply_for(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._script
            index = self._served
            self._served += 1
        if callable(script):
            return script(request)
        return script[min(index, len(script) - 1)]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
