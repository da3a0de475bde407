"""``python -m bench``: alertkit against the stdlib and its peers, every case in a fresh subprocess.

Cases (see :mod:`bench.cases`): stdlib baselines (record filtered out, ``NullHandler``,
``QueueHandler`` + ``QueueListener`` with a do-nothing handler, ``QueueHandler`` -> ``HTTPHandler``),
alertkit's ``AlertHandler`` with the HTTP and PagerDuty backends (and Redis where available),
sentry-sdk's logging integration, the official ``pagerduty`` client in a handler (synchronous, and
behind a ``QueueHandler``). Scenarios (see :mod:`bench.runner`): ``error``, ``exception`` (a
10-frame traceback), ``down`` (connection refused), ``hang`` (never answers), ``429`` and
``500`` (for 2 s, then healthy). Everything talks to one local sink (:mod:`bench.sink`).

Prints Markdown tables (ratios are within this run), writes a JSON file and a PNG of the
caller-latency distributions. ``--smoke`` is the CI run: small N, fast scenarios, short budgets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bench.cases import CASES, REDIS_CASES
from bench.runner import SCENARIOS
from bench.sink import Sink, measure_ceiling

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def run_child(spec: dict[str, Any], hard_timeout: float, exit_timeout: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter; time its exit after it printed its result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.runner", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=ROOT,
            env=env,
        )
        try:
            lines: queue.Queue[str | None] = queue.Queue()

            def read() -> None:
                assert process.stdout is not None
                for line in process.stdout:
                    lines.put(line)
                lines.put(None)

            threading.Thread(target=read, daemon=True).start()
            result: dict[str, Any] | None = None
            deadline = time.monotonic() + hard_timeout
            while result is None:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if line is None:
                    break
                if line.startswith("RESULT "):
                    result = json.loads(line[7:])
            got_at = time.monotonic()
            if result is None:
                result = {**spec, "blocked_in": "unknown (hard timeout)"}
                exit_timeout = 0.0
            try:
                process.wait(exit_timeout)
                result["exit_s"] = time.monotonic() - got_at
                result["exited"] = True
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                result["exited"] = False
            result["returncode"] = process.returncode
            if process.returncode not in (0, 3, -9):
                errors.seek(0)
                result["stderr_tail"] = errors.read()[-2000:]
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): the case must not outlive us
            process.kill()
            process.wait(10)
            raise
    if "blocked_in" in result:
        result["exited"] = False
    return result


def import_times(runs: int) -> dict[str, float]:
    """Best-of-``runs`` milliseconds of ``import X`` in fresh interpreters, with bytecode cached
    (in a throwaway ``PYTHONPYCACHEPREFIX``) as it is after ``pip install``, whatever
    ``PYTHONDONTWRITEBYTECODE`` says here."""
    code = (
        "import time; t = time.perf_counter(); import {m}; print((time.perf_counter() - t) * 1e3)"
    )
    out: dict[str, float] = {}
    if runs <= 0:  # --imports 0: no import timing
        return out
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for module in ("logging", "msgspec", "alertkit", "sentry_sdk"):
            if find_spec(module) is None:
                continue
            times = [
                float(
                    subprocess.run(
                        [sys.executable, "-c", code.format(m=module)],
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=tempfile.gettempdir(),
                        env=env,
                    ).stdout
                )
                for _ in range(runs + 1)  # the first run writes the bytecode
            ]
            out[module] = min(times[1:])
    return out


def compact(results: dict[str, Any]) -> dict[str, Any]:
    """The results for the JSON file: each run keeps a few percentiles (the summary keeps all,
    for the plot), numbers rounded to what the measurement can tell."""

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 3)
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rounded(v) for v in value]
        return value

    keep = ("p50", "p90", "p99", "p99.9", "max")
    runs = [
        {**run, "latency_us": {k: v for k, v in run.get("latency_us", {}).items() if k in keep}}
        for run in results["runs"]
    ]
    return dict(rounded({**results, "runs": runs}))


def available(case: str) -> bool:
    package = CASES[case][2]
    try:
        found = package is None or find_spec(package) is not None
    except ImportError:
        found = False
    if case in REDIS_CASES:
        from bench.redis_server import binary

        found = found and find_spec("redis") is not None and binary() is not None
    return found


def _arguments(
    argv: list[str] | None,
) -> tuple[argparse.Namespace, list[str], list[str], list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="log calls per case (default 5000)")
    parser.add_argument("--warmup", type=int, default=200, help="calls before measuring")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (medians reported)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--call-budget", type=float, default=60.0, help="seconds for the N calls")
    parser.add_argument("--flush-budget", type=float, default=60.0, help="seconds to deliver")
    parser.add_argument("--shutdown-budget", type=float, default=2.0, help="SDK shutdown budget")
    parser.add_argument("--exit-timeout", type=float, default=15.0, help="then the exit is 'hung'")
    parser.add_argument(
        "--slack", type=float, default=15.0, help="seconds a phase may overrun its budget"
    )
    parser.add_argument("--memory-events", type=int, default=100_000, help="0 skips the RSS test")
    parser.add_argument("--memory-cases", default="alertkit_http,sentry")
    parser.add_argument(
        "--imports", type=int, default=15, help="fresh interpreters per import (0: skip)"
    )
    parser.add_argument("--json", type=Path, help="default bench/results/bench.json")
    parser.add_argument("--plot", type=Path, help="default docs/performance-latency.png")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--smoke", action="store_true", help="CI: tiny and fast, numbers unjudged")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.warmup, args.repeat = min(args.n, 200), 20, 1
        args.scenarios = "error,exception,down"
        args.call_budget, args.flush_budget, args.exit_timeout, args.slack = 3.0, 3.0, 5.0, 5.0
        args.memory_events, args.imports = 2000, 2
        args.cases = ",".join(c for c in CASES if not c.startswith("pagerduty_"))
        smoke_dir = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
        args.json = args.json or smoke_dir / "bench.json"
        args.plot = args.plot or smoke_dir / "latency.png"
    args.json = args.json or RESULTS / "bench.json"
    args.plot = args.plot or ROOT / "docs" / "performance-latency.png"
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    skipped = [c for c in cases if not available(c)]
    cases = [c for c in cases if c not in skipped]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if any(s not in SCENARIOS for s in scenarios):
        parser.error(f"scenarios are {', '.join(SCENARIOS)}")

    return args, cases, skipped, scenarios


def _run_all(
    args: argparse.Namespace, cases: list[str], scenarios: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every case in every scenario (``--repeat`` rounds), then the memory runs."""
    from bench import report

    hard = 4 * args.slack + args.call_budget + args.flush_budget + args.shutdown_budget + 30
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Sink())
        redis_url = None
        if any(c in REDIS_CASES for c in cases):
            from bench.redis_server import RedisServer, binary

            redis_url = stack.enter_context(RedisServer(str(binary()))).url
        for repeat in range(args.repeat):
            for scenario in scenarios:
                for case in cases:
                    if case in REDIS_CASES and scenario not in ("error", "exception"):
                        continue  # the sink's fault scripts do not apply to Redis
                    spec = {
                        "redis_url": redis_url,
                        "case": case,
                        "scenario": scenario,
                        "n": args.n,
                        "warmup": args.warmup,
                        "port": sink.port,
                        "control_port": sink.control_port,
                        "call_budget": args.call_budget,
                        "flush_budget": args.flush_budget,
                        "shutdown_budget": args.shutdown_budget,
                        "slack": args.slack,
                    }
                    result = run_child(spec, hard, args.exit_timeout)
                    result["repeat"] = repeat
                    runs.append(result)
                    sink.mode()  # healthy again for the next case
                    print(report.progress(result), flush=True)
        memory = []
        if args.memory_events:
            for case in args.memory_cases.split(","):
                if case in CASES and available(case):
                    spec = {
                        "case": case,
                        "scenario": "memory",
                        "n": args.memory_events,
                        "call_budget": args.call_budget * 10,
                        "shutdown_budget": args.shutdown_budget,
                        "slack": args.slack,
                        "port": sink.port,
                        "control_port": sink.control_port,
                    }
                    memory.append(run_child(spec, hard * 10, args.exit_timeout))
                    print(report.progress(memory[-1]), flush=True)
    return runs, memory


def _exit_on_sigterm() -> None:
    """A SIGTERM ends the run as Ctrl-C does, through every ``finally`` on the way out: the sink,
    redis-server and the running case are stopped instead of being left behind."""

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    args, cases, skipped, scenarios = _arguments(argv)
    _exit_on_sigterm()
    from bench import report

    started = time.monotonic()
    ceiling = measure_ceiling(1.0 if args.smoke else 2.0)
    print(
        f"sink ceiling: {ceiling['per_cpu_s']:.0f} requests per CPU second "
        f"({ceiling['reached_per_s']:.0f}/s reached by 8 keep-alive clients)",
        flush=True,
    )
    runs, memory = _run_all(args, cases, scenarios)
    imports = import_times(args.imports)
    results = {
        "n": args.n,
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0],
        },
        "sink_ceiling": ceiling,
        "cases": {c: CASES[c][1] for c in cases},
        "skipped_cases": skipped,
        "scenarios": scenarios,
        "summary": report.aggregate(runs),
        "memory": memory,
        "import_ms": imports,
        "runs": runs,
        "elapsed_s": time.monotonic() - started,
    }
    results["targets"] = report.targets(results)
    text = report.markdown(results)
    print("\n" + text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(compact(results), indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    report.plot(results, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    print(f"done in {results['elapsed_s']:.0f} s")
    crashed = [f"{r['case']}/{r['scenario']}" for r in runs + memory if "stderr_tail" in r]
    if crashed:  # a case that crashed measured nothing: say so, whatever the numbers
        print(f"cases that crashed: {', '.join(crashed)}", file=sys.stderr)
        for r in runs + memory:
            if "stderr_tail" in r:
                print(f"--- {r['case']}/{r['scenario']}:\n{r['stderr_tail']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
