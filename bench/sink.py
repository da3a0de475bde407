"""A fast, scriptable HTTP sink on 127.0.0.1 for the benchmarks, in a process of its own.

Two ports: the **data port** is the destination under test (alertkit's HTTP and PagerDuty
backends, sentry-sdk, the ``pagerduty`` client all post there); the **control port** is for the
harness. Control requests (JSON answers):

* ``GET /count``: ``{"requests", "events", "refused", "first_at", "last_at", "cpu_s"}`` —
  accepted (2xx) requests and the events in them, requests answered with an error status, the
  ``time.monotonic()`` of the first and last accepted event (comparable across processes on one
  machine), and the sink's own CPU seconds so far;
* ``POST /reset``: zero the counters;
* ``POST /mode`` with ``{"status": 429, "retry_after": 1, "delay": 0.0, "hang": false,
  "down": false, "fault_s": null}``: how the data port answers from now on. ``status`` is the
  answer (default 200; 202 with PagerDuty's body on ``/v2/enqueue``), ``delay`` seconds before
  answering, ``hang`` never answers (the connection stays open, the request is not counted),
  ``down`` closes the data port so connections are refused. With ``fault_s`` the fault lasts that
  many seconds and the sink then answers normally again (a transient outage).

Events are counted per accepted request: one per JSON object, one per item of a JSON array, and
one per ``"type":"event"`` item of a Sentry envelope; gzip (and brotli) bodies are inflated first.

``python -m bench.sink --ceiling`` measures the sink's own ceiling: requests per second of CPU
time while several keep-alive clients post a typical event, and the rate they reached.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from typing import Any

_PD_BODY = b'{"status":"success","message":"Event processed","dedup_key":"bench"}'
_REASONS = {200: "OK", 202: "Accepted", 429: "Too Many Requests", 500: "Internal Server Error"}


class State:
    """Counters and the current answer script of the sink."""

    def __init__(self) -> None:
        self.mode: dict[str, Any] = {}
        self.fault_until = 0.0
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.events = 0
        self.refused = 0
        self.first_at = 0.0
        self.last_at = 0.0

    def current(self) -> dict[str, Any]:
        """The mode in force now: the fault, or healthy once a transient fault is over."""
        if self.fault_until and time.monotonic() >= self.fault_until:
            return {}
        return self.mode

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "events": self.events,
            "refused": self.refused,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "cpu_s": time.process_time(),
        }


STATE = State()


def count_events(body: bytes, encoding: str) -> int:
    """Events in one request body (see the module docs)."""
    if encoding == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            return 1
    elif encoding == "br":  # sentry-sdk compresses with brotli when it is installed
        try:
            import brotli

            body = brotli.decompress(body)
        except Exception:
            return 1
    if b'"type":"event"' in body or b'"type": "event"' in body:
        return body.count(b'"type":"event"') + body.count(b'"type": "event"')
    if b'"type":' in body and b"\n{" in body:  # a Sentry envelope without events
        return 0
    if body[:1] == b"[":
        try:
            return len(json.loads(body))
        except ValueError:
            return 1
    return 1


def _response(status: int, body: bytes, extra: str = "") -> bytes:
    reason = _REASONS.get(status, "Status")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode("latin-1") + body


class _Http(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive server: enough for urllib3, httpx and http.client."""

    control = False

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.stalled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.control:
            _DATA_CONNECTIONS.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        _DATA_CONNECTIONS.discard(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.stalled:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            length, encoding, chunked = 0, "", False
            for line in lines[1:]:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "content-length":
                    length = int(value)
                elif key == "content-encoding":
                    encoding = value.strip().lower()
                elif key == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                body, used = _dechunk(self.buffer, end + 4)
                if body is None:
                    return
            else:
                if len(self.buffer) < end + 4 + length:
                    return
                body, used = bytes(self.buffer[end + 4 : end + 4 + length]), end + 4 + length
            del self.buffer[:used]
            method, path = [*lines[0].split(" "), "", ""][:2]
            self.handle(method, path, body, encoding)

    def handle(self, method: str, path: str, body: bytes, encoding: str) -> None:
        assert self.transport is not None
        if self.control:
            self.transport.write(_response(200, _control(method, path, body)))
            return
        mode = STATE.current()
        if mode.get("hang"):
            self.stalled = True  # read nothing more, answer nothing, keep the connection open
            return
        status = int(mode.get("status", 200))
        if 200 <= status < 300:
            STATE.requests += 1
            events = count_events(body, encoding)
            if events:
                now = time.monotonic()
                STATE.events += events
                STATE.first_at = STATE.first_at or now
                STATE.last_at = now
            if path.startswith("/v2/"):
                reply = _response(202 if status == 200 else status, _PD_BODY)
            elif "/envelope/" in path or "/store/" in path:
                reply = _response(status, b'{"id":"00000000000000000000000000000000"}')
            else:
                reply = _response(status, b"{}")
        else:
            STATE.refused += 1
            extra = f"Retry-After: {mode['retry_after']}\r\n" if mode.get("retry_after") else ""
            reply = _response(status, b'{"status":"error","message":"scripted failure"}', extra)
        delay = float(mode.get("delay", 0.0))
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write, reply)
        else:
            self.transport.write(reply)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


class _Control(_Http):
    control = True


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes | None, int]:
    body = bytearray()
    pos = start
    while True:
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return None, 0
        size = int(bytes(buffer[pos:end]).split(b";")[0], 16)
        if len(buffer) < end + 2 + size + 2:
            return None, 0
        body += buffer[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
        if size == 0:
            return bytes(body), pos


_DATA_CONNECTIONS: set[asyncio.Transport] = set()
_DATA: dict[str, Any] = {}


def _control(method: str, path: str, body: bytes) -> bytes:
    if path.startswith("/reset"):
        STATE.reset()
    elif path.startswith("/mode"):
        mode = json.loads(body or b"{}")
        STATE.mode = mode
        STATE.fault_until = time.monotonic() + float(mode["fault_s"]) if mode.get("fault_s") else 0
        asyncio.get_running_loop().create_task(_apply_down(bool(mode.get("down"))))
    return json.dumps(STATE.snapshot()).encode()


async def _apply_down(down: bool) -> None:
    server = _DATA.get("server")
    if down and server is not None:
        server.close()
        _DATA["server"] = None
        for transport in list(_DATA_CONNECTIONS):
            transport.abort()
        if STATE.fault_until:
            await asyncio.sleep(max(0.0, STATE.fault_until - time.monotonic()))
            await _apply_down(False)
    elif not down and server is None:
        loop = asyncio.get_running_loop()
        _DATA["server"] = await loop.create_server(
            _Http, "127.0.0.1", _DATA["port"], backlog=1024, reuse_address=True
        )


async def _main(port: int, control_port: int) -> None:
    loop = asyncio.get_running_loop()
    _DATA["port"] = port
    await _apply_down(False)
    control = await loop.create_server(_Control, "127.0.0.1", control_port, reuse_address=True)
    async with control:
        await control.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SinkControl:
    """Talks to a running sink's control port (usable from the measured process too)."""

    def __init__(self, port: int, control_port: int) -> None:
        self.port = port
        self.control_port = control_port
        self.url = f"http://127.0.0.1:{port}"

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}",
            data=data,
            method="GET" if data is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()))

    def count(self) -> dict[str, Any]:
        return self._call("/count")

    def reset(self) -> None:
        self._call("/reset", {})

    def mode(self, **mode: Any) -> None:
        self._call("/mode", mode)


class Sink(SinkControl):
    """Runs the sink in a child process: ``with Sink() as sink: sink.url, sink.count()``."""

    def __init__(self) -> None:
        super().__init__(free_port(), free_port())
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sink:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", str(self.port), str(self.control_port)],
            cwd=root,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.count()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("the sink did not start")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None


# -- the sink's own ceiling ---------------------------------------------------------------------

_EVENT = json.dumps(
    {
        "apiKey": "bench",
        "classification": "issue",
        "eventType": "bench",
        "eventMessage": "order 4711 failed for customer c-42",
        "logLevel": "error",
        "eventTime": 1_700_000_000_000,
        "contextEnvHostname": "bench-host",
    }
).encode()


async def _hammer(port: int, stop_at: float, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(_EVENT)).encode() + b"\r\n\r\n" + _EVENT
    )
    depth = 4  # a few requests in flight per connection keeps the sink, not us, the limit
    while time.monotonic() < stop_at:
        writer.write(request * depth)
        for _ in range(depth):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)  # the "{}" body
        counter[0] += depth
    writer.close()


def measure_ceiling(seconds: float = 2.0, connections: int = 8) -> dict[str, float]:
    """Requests per second the sink serves per CPU second, and the rate reached under load."""
    with Sink() as sink:
        before = sink.count()
        counter = [0]
        started = time.monotonic()

        async def run() -> None:
            stop_at = time.monotonic() + seconds
            await asyncio.gather(
                *(_hammer(sink.port, stop_at, counter) for _ in range(connections))
            )

        asyncio.run(run())
        elapsed = time.monotonic() - started
        after = sink.count()
    served = after["requests"] - before["requests"]
    cpu = max(1e-9, after["cpu_s"] - before["cpu_s"])
    return {
        "requests": served,
        "reached_per_s": served / elapsed,
        "per_cpu_s": served / cpu,
        "sink_cpu_share": cpu / elapsed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the benchmark sink")
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("control_port", nargs="?", type=int)
    parser.add_argument("--ceiling", action="store_true", help="measure the sink's ceiling")
    args = parser.parse_args()
    if args.ceiling:
        result = measure_ceiling()
        print(
            f"sink ceiling: {result['per_cpu_s']:.0f} requests per CPU second "
            f"({result['reached_per_s']:.0f}/s reached, sink at {result['sink_cpu_share']:.0%} "
            "of a core)"
        )
    else:
        asyncio.run(_main(args.port, args.control_port))
