"""Servers and workers the integration tests start as real processes: wait for them, ask them,
stop them by their PID, all bounded."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


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
