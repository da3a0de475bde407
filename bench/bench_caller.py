"""The caller's cost of ``AlertHandler.emit``: instructions the logging thread runs per call.

Counted with ``valgrind --tool=callgrind`` (deterministic, unlike timings on a shared machine),
on the calling thread only (``--separate-threads=yes``: the policy thread's work is left out).
Each scenario runs twice in a fresh interpreter, with ``--n`` and twice as many calls, so that
the set-up (imports, the client) cancels out: cost per call = (I(2n) - I(n)) / n. The policy
thread runs only once the calls are done (a switch interval of an hour; this thread waits only in
the final ``flush``), so that thread switches do not blur the count; the captures wait meanwhile,
as in a burst. The same
calls through a handler that does nothing give what ``logging`` itself costs, taken out to give
the handler's own part. Run from the repository root::

    python -m bench.bench_caller [--n 2000] [--scenarios error,extra,info,exception] [--seeds 4]

``--against DIR`` also measures the alertkit package of another checkout (say, a worktree of an
earlier commit) in the same run and prints the ratio. Scenarios (a client with breadcrumbs on,
their trail full, and a backend that accepts everything without I/O):

* ``error``: ``logger.error("order %d failed", i)``;
* ``extra``: the same with two ``extra`` fields;
* ``info``: ``logger.info`` below the handler's level: a breadcrumb only;
* ``exception``: ``logger.exception`` for an exception raised ten frames down, with ``extra``.

``--tracing`` runs every case with OpenTelemetry's API imported and no span active, as in an
application that also traces (or in one process beside the OpenTelemetry SDK's handler): an event
then asks for the current span.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("error", "extra", "info", "exception")


def _fail(depth: int, order: int) -> None:
    if depth:
        _fail(depth - 1, order)
    raise ValueError(f"order {order} refused")


def _handler(kind: str) -> tuple[logging.Handler, Any]:
    if kind == "logging":

        class Nothing(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                """Nothing: what logging itself costs."""

        return Nothing(logging.INFO), None
    if kind == "floor":  # the least a handler that keeps anything can do: the message, queued

        class Floor(logging.Handler):
            def __init__(self, level: int) -> None:
                super().__init__(level)
                self.queue: deque[str] = deque()

            def handle(self, record: logging.LogRecord) -> bool:
                self.queue.append(record.getMessage())
                return True

        return Floor(logging.WARNING), None
    if kind == "otel":  # the OpenTelemetry SDK's handler, exporting to a port nobody serves
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        provider = LoggerProvider()
        exporter = OTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs", timeout=1)
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, max_queue_size=100_000, schedule_delay_millis=60_000)
        )
        return LoggingHandler(logging.WARNING, logger_provider=provider), provider
    from alertkit import AlertHandler, Client
    from alertkit.backends.base import BaseBackend
    from alertkit.model.outcomes import Delivered

    class Null(BaseBackend):
        scheme = "null"
        max_batch = 512

        def send(self, batch: Any) -> Any:
            return [Delivered()] * len(batch)

    client = Client(
        backends=[Null()], sample_system=False, register_atexit=False, queue_size=100_000
    )
    return AlertHandler(client=client, level=logging.WARNING), client


def run(kind: str, scenario: str, n: int) -> None:
    """The calls of one scenario (in a child under callgrind)."""
    if os.environ.get("ALERTKIT_BENCH_TRACING"):  # set by --tracing; the children inherit it
        import opentelemetry.trace  # noqa: F401 (imported is what matters: see --tracing)
    logger = logging.getLogger("bench.caller")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler, client = _handler(kind)
    # The policy thread runs only while this one waits (in flush): the count is then the
    # caller's own work, not the thread switches the machine's timing happened to cause.
    sys.setswitchinterval(3600.0)
    logger.addHandler(handler)
    for i in range(60):  # a full trail, as in a running application
        logger.info("step %d", i, extra={"step": i})
    if client is not None and kind != "otel":
        client.flush(30)
    for i in range(n):
        if scenario == "error":
            logger.error("order %d failed", i)
        elif scenario == "extra":
            logger.error("order %d failed", i, extra={"order": i, "region": "eu"})
        elif scenario == "info":
            logger.info("order %d shipped", i, extra={"order": i})
        else:
            try:
                _fail(9, i)
            except ValueError:
                logger.exception("order %d failed", i, extra={"order": i, "region": "eu"})
    if kind == "otel":
        client.shutdown()  # (what it exports goes nowhere: the calls are what is counted)
    elif client is not None:
        client.flush(30)
        client.shutdown(5)


def _instructions(kind: str, scenario: str, n: int, path: str, seed: int = 0) -> int:
    """Instructions the main thread ran for ``n`` calls, set-up included."""
    with tempfile.TemporaryDirectory(prefix="alertkit-callgrind-") as out:
        env = {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": str(seed)}
        command = [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}/cg.out",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            scenario,
            str(n),
        ]
        subprocess.run(command, cwd=out, env=env, check=True, capture_output=True, timeout=900)
        main = sorted(glob.glob(f"{out}/cg.out-01"))[0]
        text = Path(main).read_text()
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if found is None:
            raise SystemExit(f"no totals in {main}")
        return int(found.group(1))


def per_call(kind: str, scenario: str, n: int, path: str, seeds: int = 1) -> float:
    """Instructions per call: the median over ``seeds`` hash seeds (an interpreter's memory
    layout moves a count by 1-2%, as much as a change measured), two counts run at a time."""

    def one(seed: int) -> float:
        twice = _instructions(kind, scenario, 2 * n, path, seed)
        return (twice - _instructions(kind, scenario, n, path, seed)) / n

    with ThreadPoolExecutor(max_workers=2) as pool:
        return statistics.median(pool.map(one, range(seeds)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--against", help="the root of another checkout to compare with")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also count a handler whose handle() only queues record.getMessage()",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="also count the OpenTelemetry SDK's LoggingHandler (BatchLogRecordProcessor)",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="median over this many hash seeds (default 1: seed 0)"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="every case with OpenTelemetry's API imported (no span active)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tracing:
        os.environ["ALERTKIT_BENCH_TRACING"] = "1"
    if args.child:
        kind, scenario, n = args.child
        run(kind, scenario, int(n))
        return
    here = str(ROOT)
    print(
        "| scenario | logging itself | alertkit, instructions/call | handler's part |"
        + (" before | handler's part before | ratio |" if args.against else "")
    )
    print("| --- | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if args.against else ""))
    for scenario in args.scenarios.split(","):
        base = per_call("logging", scenario, args.n, here, args.seeds)
        now = per_call("alertkit", scenario, args.n, here, args.seeds)
        line = f"| {scenario} | {base:,.0f} | {now:,.0f} | {now - base:,.0f} |"
        if args.against:
            before = per_call("alertkit", scenario, args.n, args.against, args.seeds)
            line += (
                f" {before:,.0f} | {before - base:,.0f} | {(now - base) / (before - base):.2f} |"
            )
        if args.floor:
            floor = per_call("floor", scenario, args.n, here, args.seeds)
            line += f" a handler that only queues the message: {floor - base:,.0f} |"
        if args.otel:
            otel = per_call("otel", scenario, args.n, here, args.seeds)
            line += f" OpenTelemetry SDK's part {otel - base:,.0f}, alertkit's / its {(now - base) / (otel - base):.2f} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
