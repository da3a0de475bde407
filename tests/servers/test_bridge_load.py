"""The bridge on a port under load: many clients, slow clients, bad clients, no descriptors left.

Everything runs on 127.0.0.1 with raw sockets (so hundreds of clients need no threads) and every
wait has a deadline; nothing here asserts a duration, only that bounded waits are enough.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from alertkit.servers.bridge import BridgeApp, create_app, make_bridge_server
from alertkit.servers.bridge_server import BridgeServer
from alertkit.testing import MemoryBackend

TOKEN = "load-test-token"
CLIENTS = 200


class Running:
    """A bridge on a real server in a thread, with the memory backend it delivers to."""

    def __init__(self, *, start: bool = True, **server_options: float) -> None:
        self.memory = MemoryBackend()
        self.app: BridgeApp = create_app([self.memory], token=TOKEN, register_atexit=False)
        self.server: BridgeServer = make_bridge_server("127.0.0.1:0", self.app, **server_options)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.2,), daemon=True)
        if start:
            self.thread.start()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def close(self) -> None:
        assert self.server.shutdown(15)
        self.app.close()


@pytest.fixture
def running() -> Iterator[Running]:
    bridge = Running(timeout=2.0)
    yield bridge
    bridge.close()


def request(n: int, *, token: str = TOKEN, body: bytes | None = None) -> bytes:
    """One complete HTTP/1.1 request; the connection closes after the answer."""
    if body is None:
        body = json.dumps(
            {
                "df_title": f"disk full on host {n}",
                "df_status": "critical",
                "df_monitor_checker_event_ref": f"ref-{n}",
            }
        ).encode()
    head = (
        f"POST /guance?token={token} HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answers(socks: list[socket.socket], deadline: float) -> list[int | None]:
    """Each socket's HTTP status (None: closed or reset without one), read until ``deadline``."""
    received = {sock: b"" for sock in socks}
    statuses: dict[socket.socket, int | None] = {}
    while len(statuses) < len(socks) and time.monotonic() < deadline:
        waiting = [s for s in socks if s not in statuses]
        readable, _, _ = select.select(waiting[:500], [], [], 0.5)
        for sock in readable:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            received[sock] += chunk
            if b"\r\n" in received[sock]:
                statuses[sock] = int(received[sock].split(b" ", 2)[1])
            elif not chunk:
                statuses[sock] = None
    return [statuses.get(sock, -1) for sock in socks]  # -1: no answer in time


def connect_all_before_serving(port: int, count: int) -> list[socket.socket]:
    """``count`` connections completed by the kernel alone, while nothing accepts them: the
    listen backlog must hold them all (a backlog of 5 completes 6 and leaves the rest retrying
    their SYN a second later and more)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    pending = set(socks)
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(pending), [], 0.2)
        for sock in writable:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                pending.discard(sock)
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(30)
    assert not pending, f"{len(pending)} of {count} connections not completed by the backlog"
    return socks


def test_200_concurrent_authorised_clients_are_all_answered() -> None:
    running = Running(start=False, timeout=2.0)
    socks: list[socket.socket] = []
    try:
        socks = connect_all_before_serving(running.port, CLIENTS)
        running.thread.start()
        for n, sock in enumerate(socks):
            sock.sendall(request(n))
        statuses = answers(socks, time.monotonic() + 45)
        assert statuses == [202] * CLIENTS
        assert running.app.client.flush(30)
        assert len(running.memory.envelopes) == CLIENTS
    finally:
        for sock in socks:
            sock.close()
        if running.thread.is_alive():
            running.close()
        else:
            running.server.server_close()
            running.app.close()


def test_200_slow_clients_time_out_without_starving_a_valid_request(running: Running) -> None:
    threads_before = threading.active_count()
    slow = [running.connect() for _ in range(CLIENTS)]
    try:
        for sock in slow:
            sock.sendall(b"POST /guance HTTP/1.1\r\nHost: bridge\r\nContent-Length: 100\r\n")
        valid = running.connect()
        valid.sendall(request(1))
        assert answers([valid], time.monotonic() + 20) == [202]
        valid.close()
        # half-sent requests hold no thread: waitress reads them in its one event loop
        assert threading.active_count() - threads_before < 20
        # and the server hangs up on every one of them once the request deadline (2 s) passes
        assert answers(slow, time.monotonic() + 30) == [None] * CLIENTS
    finally:
        for sock in slow:
            sock.close()
    assert running.app.client.flush(10)
    assert len(running.memory.envelopes) == 1


def test_a_client_dripping_its_headers_is_cut_at_the_request_deadline(running: Running) -> None:
    drip = running.connect()
    try:
        partial = b"POST /guance HTTP/1.1\r\nHost: bridge\r\nX-Slow: " + b"a" * 10_000
        closed_at = None
        started = time.monotonic()
        for byte in partial:  # one byte every 50 ms: never idle long enough for an idle timeout
            try:
                drip.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            if select.select([drip], [], [], 0.05)[0]:
                try:
                    if not drip.recv(1024):
                        closed_at = time.monotonic()
                        break
                except OSError:
                    closed_at = time.monotonic()
                    break
            if time.monotonic() - started > 30:
                break
    finally:
        drip.close()
    assert closed_at is not None, "the server kept a dripping request open for 30 s"


BAD_REQUESTS = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # TLS hello to plain HTTP
    b"GARBAGE\r\n\r\n",
    b"POST /guance HTTP/1.1\r\nHost: b\r\nContent-Length: abc\r\n\r\n",
    b"POST /guance HTTP/1.1\r\nHost: b\r\nContent-Length: 99999999\r\n\r\n",
    b"POST /guance HTTP/1.1\r\nHost: b\r\nX-Big: " + b"h" * 40_000 + b"\r\n\r\n",
    b"POST /guance HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    request(0, token="wrong"),
    request(0, body=b"{not json"),
    request(0, body=b"[" * 50_000 + b"]" * 50_000),
    request(0, body=b'{"df_title": "t", "df_status": "critical", "Result": NaN}'),
    request(0, body=b'{"df_title": "t"}'),
    request(0, body=b"\xff\xfe\x00"),
]


def test_a_burst_of_invalid_requests_never_stops_valid_ones(running: Running) -> None:
    socks: list[socket.socket] = []
    valid: list[int] = []
    try:
        for n in range(300):
            sock = running.connect()
            socks.append(sock)
            if n % 10 == 0:
                valid.append(n)
                sock.sendall(request(n))
            else:
                sock.sendall(BAD_REQUESTS[n % len(BAD_REQUESTS)])
        statuses = answers(socks, time.monotonic() + 45)
    finally:
        for sock in socks:
            sock.close()
    assert [statuses[n] for n in valid] == [202] * len(valid)
    invalid = [s for n, s in enumerate(statuses) if n not in valid]
    assert all(s is None or 400 <= s < 500 for s in invalid), sorted(set(map(str, invalid)))
    assert running.app.client.flush(30)
    assert len(running.memory.envelopes) == len(valid)


FD_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys, threading
    from alertkit.servers.bridge import create_app, make_bridge_server
    from alertkit.testing import MemoryBackend

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    app = create_app([MemoryBackend()], token=sys.argv[1], register_atexit=False)
    server = make_bridge_server("127.0.0.1:0", app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.readline()
    hog = []
    try:
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print("full", flush=True)
    sys.stdin.readline()
    for fd in hog:
        os.close(fd)
    print("freed", flush=True)
    sys.stdin.readline()
    server.shutdown(10)
    app.close()
    """
)


def _line(child: subprocess.Popen[str], timeout: float = 30) -> str:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, "the bridge process did not answer in time"
    return child.stdout.readline().strip()


def test_out_of_descriptors_the_server_rests_instead_of_spinning(tmp_path) -> None:
    with (tmp_path / "stderr").open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", FD_SCRIPT, TOKEN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert child.stdin is not None
    socks: list[socket.socket] = []
    try:
        port = int(_line(child))
        child.stdin.write("fill\n")
        child.stdin.flush()
        assert _line(child) == "full"
        for n in range(3):  # queued by the kernel; the server cannot accept them yet
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request(n))
            socks.append(sock)
        process = psutil.Process(child.pid)
        before = sum(process.cpu_times()[:2])
        time.sleep(3)  # the window the CPU use is measured over
        used = sum(process.cpu_times()[:2]) - before
        # a server retrying accept() in a loop burns whatever CPU it gets; a resting one ~none
        assert used < 0.5, f"{used:.2f} s of CPU in 3 s with no descriptors left"
        child.stdin.write("free\n")
        child.stdin.flush()
        assert _line(child) == "freed"
        assert answers(socks, time.monotonic() + 30) == [202] * 3
        child.stdin.write("stop\n")
        child.stdin.flush()
        assert child.wait(30) == 0
    finally:
        for sock in socks:
            sock.close()
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdin.close()
        if child.stdout is not None:
            child.stdout.close()
    logged = (tmp_path / "stderr").read_text()
    assert "cannot accept a connection (Too many open files)" in logged  # it did run out
    assert TOKEN not in logged
