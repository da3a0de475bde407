"""A small fleet on loopback for the relay tests: producer processes, relay processes, a sink.

Every test counts the same five numbers (:class:`Tally`): sent (what producers logged), delivered
(distinct events the destination got), duplicated (deliveries beyond the first), dead-lettered
(entries in ``<stream>:dead``) and lost (sent, neither delivered nor dead-lettered), which must
be 0.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from alertkit.model.event import Envelope
from alertkit.relay.keys import state_key, stream_key
from alertkit.testing.stand_in import Reply, Request, ScriptedServer
from tests.standins.redis import RedisServer

STREAM = "alertkit:events"
ROOT = Path(__file__).resolve().parents[2]

PRODUCER = textwrap.dedent(
    """
    import logging, sys, time
    from alertkit import AlertHandler, Client, RetryPolicy

    url, prefix, count, spool, pause = sys.argv[1:6]
    client = Client(
        backends=[url], sample_system=False, storm_window=0, shutdown_timeout=10,
        spool=spool == "1",
        retry=RetryPolicy(backoff=0.05, max_backoff=0.2, deadline=1.0, circuit_cooldown=0.3),
    )
    logger = logging.getLogger("producer")
    logger.propagate = False
    logger.addHandler(AlertHandler(client=client))
    for i in range(int(count)):
        logger.error("%s event %d", prefix, i)
        time.sleep(float(pause))
    client.flush(30)
    spool = client.pipeline.spool
    deadline = time.monotonic() + 60
    while spool is not None and spool.counts() and time.monotonic() < deadline:
        time.sleep(0.1)  # wait for the spool to replay what Redis missed
    client.shutdown(10)
    """
)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(0.05)
    return condition()


def stream_url(server: RedisServer, stream: str = STREAM) -> str:
    return f"redis-stream://127.0.0.1:{server.port}/0?stream={stream}"


class Sink:
    """An event API stand-in that records each event's message; scriptable per message."""

    def __init__(self, answer: Callable[[str], Reply] | None = None) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.ids: collections.defaultdict[str, set[str]] = collections.defaultdict(set)
        self._answer = answer or (lambda message: Reply(200))
        self._lock = threading.Lock()
        self.server = ScriptedServer(self._reply)

    def _reply(self, request: Request) -> Reply:
        message = request.json()["eventMessage"]
        reply = self._answer(message)
        if reply.status < 300:
            with self._lock:
                self.received[message] += 1
                self.ids[message].add(request.headers["idempotency-key"])
        return reply

    @property
    def url(self) -> str:
        return f"{self.server.url}/v1/events?api_key=relay-test-key"

    def __enter__(self) -> Sink:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@dataclass
class Tally:
    sent: int
    delivered: int
    duplicated: int
    dead_lettered: int
    lost: int

    def __str__(self) -> str:
        return (
            f"sent {self.sent}, delivered {self.delivered}, duplicated {self.duplicated}, "
            f"dead-lettered {self.dead_lettered}, lost {self.lost}"
        )


def dead_letters(server: RedisServer, stream: str = STREAM) -> list[dict[str, Any]]:
    with server.client() as conn:
        entries = conn.xrange(state_key(stream, "dead"))
    letters = []
    for _, fields in entries:
        letter = {k.decode(): v for k, v in fields.items()}
        for key, value in list(letter.items()):
            if key != "envelope":
                letter[key] = value.decode()
        if "envelope" in letter:
            letter["envelope"] = msgspec.json.decode(letter["envelope"], type=Envelope)
        letters.append(letter)
    return letters


def tally(sent: Iterable[str], sink: Sink, server: RedisServer, stream: str = STREAM) -> Tally:
    sent = list(sent)
    dead = {
        letter["envelope"].event.event_message
        for letter in dead_letters(server, stream)
        if "envelope" in letter
    }
    got = sink.received
    return Tally(
        sent=len(sent),
        delivered=sum(1 for m in sent if got[m]),
        duplicated=sum(max(0, got[m] - 1) for m in sent),
        dead_lettered=len(dead),
        lost=sum(1 for m in sent if not got[m] and m not in dead),
    )


def pending(server: RedisServer, group: str = "alertkit", stream: str = STREAM) -> int:
    """Entries delivered to the group's relays and not yet acknowledged (0 without a group)."""
    import redis

    with server.client() as conn:
        try:
            return int(conn.xpending(stream_key(stream), group)["pending"])
        except redis.ResponseError:  # no group yet
            return 0


class Fleet:
    """Processes started by one test, stopped (by PID) at its end."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="alertkit-fleet-"))
        self.script = self.dir / "producer.py"
        self.script.write_text(PRODUCER)

    def env(self, home: str) -> dict[str, str]:
        env = {**os.environ, "ALERTKIT_HOME": home, "PYTHONPATH": str(ROOT)}
        env.pop("ALERTKIT_BACKENDS", None)
        return env

    def relay(
        self, url: str, *to: str, name: str, extra: Iterable[str] = ()
    ) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the fleet)
        command = [sys.executable, "-m", "alertkit", "relay", "--from", url, "--consumer", name]
        for destination in to:
            command += ["--to", destination]
        process = subprocess.Popen(
            [*command, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(str(self.dir / name)),
        )
        self.processes.append(process)
        return process

    def producer(
        self, url: str, prefix: str, count: int, *, spool: bool = False, pause: float = 0.0
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                sys.executable,
                str(self.script),
                url,
                prefix,
                str(count),
                "1" if spool else "0",
                str(pause),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env(str(self.dir / f"home-{prefix}")),
        )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)


def sent_messages(prefix: str, count: int) -> list[str]:
    return [f"{prefix} event {i}" for i in range(count)]
