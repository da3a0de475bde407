"""Caller-thread cost and delivery throughput of ``AlertHandler`` against the stdlib and sentry-sdk.

Each case runs in a fresh subprocess (no import or thread state leaks between cases), logging
``N`` errors through its handler to the same local HTTP sink (bench/sink.py, its own process):

- ``queue_handler``: stdlib ``QueueHandler`` + ``QueueListener`` feeding an ``HTTPHandler`` — the
  floor for a non-blocking hand-off;
- ``alertkit``: ``AlertHandler`` with the HTTP event backend;
- ``sentry``: ``sentry-sdk``'s logging integration (installed with the ``bench`` extra), if present.

Run: ``python -m bench.core [--n 5000]``. Prints a Markdown table with ratios to the
``QueueHandler`` baseline from the same run, and writes ``bench/results/core.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.sink import Sink

RESULTS = Path(__file__).parent / "results"


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _setup(case: str, url: str) -> tuple[Any, Any]:
    """Return (logger, finish) for a case; ``finish(timeout)`` drains it."""
    import logging

    logger = logging.getLogger(f"bench.{case}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if case == "queue_handler":
        import logging.handlers
        import queue

        q: queue.Queue[logging.LogRecord] = queue.Queue(-1)
        host = url.removeprefix("http://")
        target = logging.handlers.HTTPHandler(host, "/v1/events", method="POST")
        listener = logging.handlers.QueueListener(q, target)
        listener.start()
        logger.addHandler(logging.handlers.QueueHandler(q))
        return logger, lambda timeout: listener.stop()
    if case == "alertkit":
        from alertkit import AlertHandler, Client

        client = Client(
            api_key="bench",
            backends=[f"{url}/api/v1/events"],
            sample_system=False,
            register_atexit=False,
        )
        logger.addHandler(AlertHandler(client=client))
        return logger, client.shutdown
    if case == "sentry":
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration

        port = url.rsplit(":", 1)[1]
        sentry_sdk.init(
            dsn=f"http://public@127.0.0.1:{port}/1",
            default_integrations=False,
            integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
        )
        return logging.getLogger(f"bench.{case}"), sentry_sdk.flush
    if case == "filtered":
        logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.CRITICAL)
        return logger, lambda timeout: None
    raise SystemExit(f"unknown case {case}")


def run_case(case: str, url: str, n: int, warmup: int) -> dict[str, Any]:
    """Runs inside the subprocess."""
    import resource

    from bench.sink import Sink as _Sink

    sink = _Sink.__new__(_Sink)
    sink.url = url
    logger, finish = _setup(case, url)
    for i in range(warmup):
        logger.error("warm-up %s", i)
    time.sleep(0.5)
    base = sink.count()["events"]
    latencies: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in range(n):
        t0 = clock()
        logger.error("order %s failed for customer %s", i, "c-42")
        latencies.append(clock() - t0)
    calls_done = time.perf_counter()
    delivered, last_change, last = 0, time.perf_counter(), -1
    while time.perf_counter() - start < 60:
        delivered = sink.count()["events"] - base
        if delivered >= n:
            break
        if delivered != last:
            last, last_change = delivered, time.perf_counter()
        elif time.perf_counter() - last_change > 2.0:
            break
        time.sleep(0.01)
    delivered_at = time.perf_counter()
    t0 = time.perf_counter()
    finish(5.0)
    shutdown = time.perf_counter() - t0
    delivered = max(delivered, sink.count()["events"] - base)
    return {
        "case": case,
        "n": n,
        "p50_us": _percentile(latencies, 0.50),
        "p99_us": _percentile(latencies, 0.99),
        "max_us": max(latencies) / 1000.0,
        "mean_us": statistics.fmean(latencies) / 1000.0,
        "calls_per_s": n / (calls_done - start),
        "delivered": min(delivered, n),
        "lost": max(0, n - delivered),
        "delivered_per_s": min(delivered, n) / (delivered_at - start),
        "shutdown_s": shutdown,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def import_time(runs: int = 7) -> dict[str, float]:
    """Best-of-``runs`` wall time of ``import alertkit`` and of ``import logging`` (baseline)."""
    code = (
        "import time; t = time.perf_counter(); import {m}; print((time.perf_counter() - t) * 1000)"
    )
    result = {}
    for module in ("logging", "alertkit"):
        times = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code.format(m=module)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(runs)
        ]
        result[module] = min(times)
    return result


def _available(case: str) -> bool:
    if case != "sentry":
        return True
    try:
        import sentry_sdk  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="log calls per case")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # inside a subprocess
        print(json.dumps(run_case(args.case, args.url, args.n, args.warmup)))
        return 0
    cases = [c for c in ("filtered", "queue_handler", "alertkit", "sentry") if _available(c)]
    rows = []
    with Sink() as sink:
        for case in cases:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.core",
                    "--case",
                    case,
                    "--url",
                    sink.url,
                    "--n",
                    str(args.n),
                    "--warmup",
                    str(args.warmup),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            )
            if out.returncode != 0:
                print(f"case {case} failed:\n{out.stderr}", file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    imports = import_time()
    base = next(r for r in rows if r["case"] == "queue_handler")
    print(f"\nN = {args.n} logger.error calls per case, same sink, same run.\n")
    print(
        "| case | p50 µs | p99 µs | p50 / QueueHandler | p99 / QueueHandler | delivered | "
        "delivered/s | delivered/s / QueueHandler | shutdown s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['case']} | {r['p50_us']:.2f} | {r['p99_us']:.2f} | "
            f"{r['p50_us'] / base['p50_us']:.2f}x | {r['p99_us'] / base['p99_us']:.2f}x | "
            f"{r['delivered']}/{r['n']} | {r['delivered_per_s']:.0f} | "
            f"{r['delivered_per_s'] / base['delivered_per_s']:.2f}x | {r['shutdown_s']:.2f} |"
        )
    print(
        f"\nimport alertkit: {imports['alertkit']:.1f} ms (import logging: "
        f"{imports['logging']:.1f} ms), best of 7 fresh interpreters"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(
        json.dumps({"n": args.n, "cases": rows, "import_ms": imports}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
