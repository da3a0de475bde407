"""Servers and workers the integration tests start as real processes: wait for them, ask them,
stop them by their PID, all bounded."""

from __future__ import annotations

import collections
import contextlib
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.standins.http import Request


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, budget: float = 30) -> None:
    """Until ``proc`` listens on 127.0.0.1:``port``; fails with its log if it dies or is late."""
    deadline = time.monotonic() + budget
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, (
                f"not listening after {budget} s: " + (log.read_text()[-3000:])
            )
            time.sleep(0.1)


def get(url: str) -> int:
    """The status of a GET; -1 when the server hangs up without one (uWSGI on an error)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (ConnectionError, urllib.error.URLError):
        return -1


def stop(proc: subprocess.Popen[bytes]) -> None:
    """A graceful stop (SIGTERM to its PID), bounded; killed if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``log`` (read when something fails)."""
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_until(condition: Callable[[], bool], budget: float = 20) -> bool:
    """Poll ``condition`` until it holds or ``budget`` seconds pass; returns its last answer."""
    deadline = time.monotonic() + budget
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def failed_requests(requests: list[Request]) -> dict[str, int]:
    """How often each ``request /boom/N failed`` arrived, whatever words the middleware adds."""
    return dict(
        collections.Counter(
            re.sub(r".*(request /boom/\d+ failed).*", r"\1", request.json()["eventMessage"])
            for request in requests
        )
    )


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes], port: int, log: Path) -> Iterator[None]:
    """The block runs once ``proc`` listens on ``port``; ``proc`` is stopped after it."""
    try:
        wait_for_port(port, proc, log)
        yield
    finally:
        stop(proc)


def boom(port: int, count: int) -> list[int]:
    """``count`` requests to ``/boom/N``, each of which raises in the app; their statuses."""
    return [get(f"http://127.0.0.1:{port}/boom/{n}") for n in range(count)]
