"""What a breadcrumb costs the caller: ``logger.info`` with breadcrumbs on, against the stdlib's
``QueueHandler`` and sentry-sdk with its default breadcrumbs, in the same run.

Run from the repository root::

    python -m bench.bench_breadcrumbs [--n 20000] [--errors 2000] [--repeat 3]

Each case runs in a fresh interpreter (sentry-sdk patches :mod:`logging` for the process), all of
them logging through ``logging.getLogger("bench")`` at INFO with one handler attached:

* ``queue``: ``QueueHandler`` + ``QueueListener`` with a do-nothing handler (the stdlib's
  non-blocking hand-off, the yardstick);
* ``alertkit``: ``AlertHandler`` at its default level (WARNING) with the client's default
  breadcrumbs (50, INFO and above): every ``logger.info`` becomes a breadcrumb and nothing else;
* ``alertkit_off``: the same with ``max_breadcrumbs=0`` (the record stops at the handler's level);
* ``sentry``: ``sentry_sdk.init`` with its defaults (the logging integration keeps INFO records as
  breadcrumbs, 100 of them, and sends ERROR records as events), its DSN pointing at a local sink.

Each case times ``--n`` calls of ``logger.info("order %s shipped to %s", i, "customer-42")`` one by
one (``perf_counter_ns`` around each call) and then ``--errors`` calls of ``logger.error`` (an
event carrying the full trail; the queue case hands the record over like any other), after
``--warmup`` calls of each. The alertkit case also reports the size of its trail after the run
(the deque, its tuples and their ``extra`` dicts: what breadcrumbs themselves hold). Cases
alternate round-robin for ``--repeat`` rounds; the table shows medians of the p50s and the ratio
to ``queue``. Every destination is a sink on 127.0.0.1 started by this script.
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
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ("queue", "alertkit", "alertkit_off", "sentry")
LABELS = {
    "queue": "`QueueHandler` + `QueueListener`, do-nothing handler",
    "alertkit": "alertkit `AlertHandler`, breadcrumbs on (default)",
    "alertkit_off": "alertkit `AlertHandler`, `max_breadcrumbs=0`",
    "sentry": "sentry-sdk, default breadcrumbs (logging integration)",
}


class _Sink(BaseHTTPRequestHandler):
    """Accepts anything with 200 ``{}``: the event API and sentry's envelope endpoint alike."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _logger() -> logging.Logger:
    logger = logging.getLogger("bench")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


class _Nothing(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        """Drop the record."""


def setup(case: str, url: str) -> tuple[logging.Logger, Callable[[], dict[str, Any]]]:
    """The case's logger, and a function returning what it reports after the run."""
    logger = _logger()
    if case == "queue":
        records: queue.Queue[Any] = queue.Queue(-1)
        listener = logging.handlers.QueueListener(records, _Nothing())
        listener.start()
        logger.addHandler(logging.handlers.QueueHandler(records))
        return logger, dict
    if case in ("alertkit", "alertkit_off"):
        from alertkit import AlertHandler, Client
        from alertkit.capture import breadcrumbs

        options = {"max_breadcrumbs": 0} if case == "alertkit_off" else {}
        client = Client(api_key="bench", backends=[f"{url}/api/v1/events"], **options)
        logger.addHandler(AlertHandler(client=client))

        def report() -> dict[str, Any]:
            client.flush(10)
            entries = breadcrumbs.current_entries()
            own = sum(sys.getsizeof(e) + (sys.getsizeof(e[5]) if e[5] else 0) for e in entries)
            trail = breadcrumbs.process_trail.items  # the benchmark's thread has no scope
            return {"trail_entries": len(entries), "trail_bytes": own + sys.getsizeof(trail)}

        return logger, report
    if case == "sentry":
        import sentry_sdk

        port = url.rsplit(":", 1)[1]
        sentry_sdk.init(dsn=f"http://public@127.0.0.1:{port}/1")  # default integrations
        logger.addHandler(logging.NullHandler())
        return logger, lambda: {"flushed": sentry_sdk.flush(10) is None}
    raise SystemExit(f"unknown case {case!r}")


def _p50(samples: list[int]) -> float:
    return statistics.median(samples) / 1000  # microseconds


def child(case: str, url: str, n: int, errors: int, warmup: int) -> dict[str, Any]:
    """One case in this interpreter: p50 of ``logger.info``, then of ``logger.error``."""
    logger, report = setup(case, url)
    clock = time.perf_counter_ns
    result: dict[str, Any] = {"case": case}
    for name, call, count in (("info", logger.info, n), ("error", logger.error, errors)):
        for i in range(warmup):
            call("order %s shipped to %s", i, "customer-42")
        samples = []
        for i in range(count):
            start = clock()
            call("order %s shipped to %s", i, "customer-42")
            samples.append(clock() - start)
        result[f"{name}_p50_us"] = round(_p50(samples), 3)
    result.update(report())
    return result


def run_case(case: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.bench_breadcrumbs",
        "--child",
        case,
        "--url",
        url,
        "--n",
        str(args.n),
        "--errors",
        str(args.errors),
        "--warmup",
        str(args.warmup),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(rounds: list[dict[str, dict[str, Any]]]) -> str:
    """Medians over the rounds, as a Markdown table with ratios to ``queue``."""

    def median(case: str, key: str) -> float:
        return statistics.median(r[case][key] for r in rounds)

    base_info, base_error = median("queue", "info_p50_us"), median("queue", "error_p50_us")
    lines = [
        "| case | `logger.info` p50 (µs) | vs `QueueHandler` | `logger.error` p50 (µs) "
        "| vs `QueueHandler` |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for case in CASES:
        info, error = median(case, "info_p50_us"), median(case, "error_p50_us")
        lines.append(
            f"| {LABELS[case]} | {info:.2f} | {info / base_info:.2f}x | {error:.2f} "
            f"| {error / base_error:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_breadcrumbs")
    parser.add_argument("--n", type=int, default=20_000, help="logger.info calls per case")
    parser.add_argument("--errors", type=int, default=2_000, help="logger.error calls per case")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every case")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/breadcrumbs.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.url, args.n, args.errors, args.warmup)))
        return 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rounds = []
    try:
        for _ in range(args.repeat):
            rounds.append({case: run_case(case, url, args) for case in CASES})
    finally:
        server.shutdown()
    print(table(rounds))
    trail = [r["alertkit"] for r in rounds]
    print(
        f"\nalertkit trail after the run: {trail[-1]['trail_entries']} entries, "
        f"{trail[-1]['trail_bytes']:,} bytes of its own"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": vars(args) | {"json": args.json.name}, "rounds": rounds}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
