"""A fast HTTP sink on 127.0.0.1 for benchmarks: counts requests and events, answers at once.

asyncio, HTTP/1.1 keep-alive, one process of its own (so it does not share the measured
process's GIL). ``GET /count`` returns ``{"requests": n, "events": m}``; ``POST /reset`` zeroes it.
Sentry envelopes count one event per item line with ``"type":"event"``; gzip bodies are inflated.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import sys
import time
import urllib.request

STATE = {"requests": 0, "events": 0}


def _count_events(body: bytes, headers: dict[str, str]) -> int:
    if headers.get("content-encoding") == "gzip":
        try:
            body = gzip.decompress(body)
        except OSError:
            return 1
    if b'"type":"event"' in body or b'"type": "event"' in body:
        return body.count(b'"type":"event"') + body.count(b'"type": "event"')
    if body.startswith(b"["):
        try:
            return len(json.loads(body))
        except ValueError:
            return 1
    return 1


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path.startswith("/count"):
                payload = json.dumps(STATE).encode()
            elif path.startswith("/reset"):
                STATE.update(requests=0, events=0)
                payload = b"{}"
            else:
                STATE["requests"] += 1
                STATE["events"] += _count_events(body, headers)
                payload = b"{}"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    """Runs the sink in a child process; ``with Sink() as sink: sink.url, sink.count()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sink:
        self._process = subprocess.Popen([sys.executable, "-m", "bench.sink", str(self.port)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.count()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the sink did not start")

    def count(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/count", timeout=5) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/reset", data=b"", method="POST"), timeout=5
        ).read()

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
