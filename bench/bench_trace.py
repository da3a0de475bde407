"""What trace correlation costs the caller: ``logger.warning`` through the AlertHandler against the
stdlib ``QueueHandler``, with and without OpenTelemetry.

Run from the repository root::

    python -m bench.bench_trace [--number 20000] [--repeat 5] [--json out.json]

Three situations, each in a fresh interpreter (importing OpenTelemetry cannot be undone): the
application never imported ``opentelemetry`` (alertkit then looks it up in ``sys.modules`` and
stops); it imported it but no span is active; a span of the real SDK is active around the call. In
each, the same process times a ``QueueHandler`` (onto a ``SimpleQueue``) and an ``AlertHandler``
(onto a client with an in-memory backend), their runs alternating, each call timed alone with
``perf_counter_ns``; reported: the median per call in microseconds (best run of ``--repeat``) and
the ratio AlertHandler / QueueHandler. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import queue
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SITUATIONS = {
    "no opentelemetry imported": "none",
    "opentelemetry imported, no span": "idle",
    "inside an active SDK span": "span",
}


def _p50(logger: logging.Logger, number: int) -> float:
    clock = time.perf_counter_ns
    samples = []
    for i in range(number):
        start = clock()
        logger.warning("order %s failed", i)
        samples.append(clock() - start)
    return statistics.median(samples) / 1000


def measure(mode: str, number: int, repeat: int) -> dict[str, float]:
    """In this process: p50 (us) of QueueHandler and AlertHandler, runs alternating."""
    from alertkit import AlertHandler, Client
    from alertkit.testing import MemoryBackend

    client = Client(
        backends=[MemoryBackend()],
        sample_system=False,
        register_atexit=False,
        queue_size=number * repeat * 2 + 10,
    )
    baseline = logging.getLogger("bench.trace.queue")
    baseline.addHandler(logging.handlers.QueueHandler(queue.SimpleQueue()))
    ours = logging.getLogger("bench.trace.alertkit")
    ours.addHandler(AlertHandler(client=client))
    for logger in (baseline, ours):
        logger.propagate = False
    best = {"queue": float("inf"), "alertkit": float("inf")}
    with ExitStack() as stack:
        if mode in ("idle", "span"):
            from opentelemetry.sdk.trace import TracerProvider

            if mode == "span":
                tracer = TracerProvider().get_tracer("bench")
                stack.enter_context(tracer.start_as_current_span("request"))
        for _ in range(repeat):
            best["queue"] = min(best["queue"], _p50(baseline, number))
            best["alertkit"] = min(best["alertkit"], _p50(ours, number))
    client.shutdown(5)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=sorted(SITUATIONS.values()), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.number, args.repeat)))
        return 0
    rows: dict[str, Any] = {}
    for label, mode in SITUATIONS.items():
        out = subprocess.run(
            [
                *(sys.executable, "-m", "bench.bench_trace", "--child", mode),
                *("--number", str(args.number), "--repeat", str(args.repeat)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        rows[label] = json.loads(out.strip().splitlines()[-1])
    print("| situation | QueueHandler p50 (us) | AlertHandler p50 (us) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, row in rows.items():
        ratio = row["alertkit"] / row["queue"]
        print(f"| {label} | {row['queue']:.2f} | {row['alertkit']:.2f} | {ratio:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
