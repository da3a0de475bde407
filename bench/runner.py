"""One case in one scenario, inside its own fresh subprocess (``python -m bench.runner SPEC``).

Phases, each under a watchdog: set up the SDK; warm up against a healthy sink and flush; reset the
sink and script the scenario; time ``N`` calls one by one on this (the caller's) thread; flush and
read what the sink accepted; shut the SDK down. The result is one JSON line on stdout, printed
before the interpreter exits, so the parent can time the exit itself (and call it "hung" when it
does not come). When a phase overruns its budget (a synchronous client waiting on a dead
destination), the watchdog prints what was measured so far, marked ``blocked_in``, and ends the
process.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import sys
import threading
import time
from typing import Any

from bench.sink import SinkControl

#: Percentiles kept for the latency plot (the table uses p50, p99 and max).
PERCENTILES = [*range(0, 100), 99.5, 99.9, 99.99]

#: How each scenario scripts the sink (``fault_s``: a transient fault, then healthy again) and
#: how long the flush after the calls may wait for delivery (seconds; None: ``--flush-budget``).
SCENARIOS: dict[str, tuple[dict[str, Any], float | None]] = {
    "error": ({}, None),
    "exception": ({}, None),
    "down": ({"down": True}, 3.0),
    "hang": ({"hang": True}, 3.0),
    "429": ({"status": 429, "retry_after": 1, "fault_s": 2.0}, 20.0),
    "500": ({"status": 500, "fault_s": 2.0}, 20.0),
}


def percentiles(samples: list[int]) -> dict[str, float]:
    """Latency percentiles in microseconds from nanosecond samples."""
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1
    out = {f"p{p:g}": ordered[min(last, int(p / 100 * len(ordered)))] / 1000 for p in PERCENTILES}
    out["max"] = ordered[-1] / 1000
    return out


def _rss_mb() -> float:
    """The current resident set size (not the peak), from /proc."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux keeps that across
    ``execve``, so a child would report its parent's peak when the parent was bigger."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


class Watchdog:
    """Ends the process with a partial result when a phase overruns its budget."""

    def __init__(self, result: dict[str, Any], latencies: list[int]) -> None:
        self.result = result
        self.latencies = latencies
        self.phase = "setup"
        self.deadline = float("inf")
        self.started = time.monotonic()
        self._changed = threading.Condition()
        threading.Thread(target=self._watch, name="bench-watchdog", daemon=True).start()

    def enter(self, phase: str, budget: float) -> None:
        with self._changed:
            self.phase, self.started = phase, time.monotonic()
            self.deadline = self.started + budget
            self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while True:
                wait = self.deadline - time.monotonic()
                if wait <= 0:
                    break
                self._changed.wait(min(wait, 3600))
        now = time.monotonic()
        self.result["blocked_in"] = self.phase
        self.result["blocked_for_s"] = now - self.started
        if self.phase == "calls":
            done = len(self.latencies)
            self.result["calls_done"] = done
            # the call in progress has taken at least this long
            samples = [*self.latencies, int((now - self.result["_call_started"]) * 1e9)]
            self.result["latency_us"] = percentiles(samples)
        emit(self.result)
        os._exit(3)


def emit(result: dict[str, Any]) -> None:
    result["peak_rss_mb"] = _peak_rss_mb()
    clean = {k: v for k, v in result.items() if not k.startswith("_")}
    sys.stdout.write("RESULT " + json.dumps(clean) + "\n")
    sys.stdout.flush()


def _raise(depth: int, i: int) -> None:
    if depth <= 1:
        raise ValueError(f"order {i} failed: card declined")
    _raise(depth - 1, i)


def run(spec: dict[str, Any]) -> None:
    case, scenario, n = spec["case"], spec["scenario"], int(spec["n"])
    sink = SinkControl(spec["port"], spec["control_port"])
    latencies: list[int] = []
    result: dict[str, Any] = {"case": case, "scenario": scenario, "n": n}
    dog = Watchdog(result, latencies)
    slack = float(spec.get("slack", 30.0))
    dog.enter("setup", slack)
    from bench.cases import CASES, REDIS_CASES

    sdk = CASES[case][0](spec["redis_url"] if case in REDIS_CASES else sink.url)
    logger = sdk.logger
    exceptions = scenario == "exception"

    def call(i: int) -> None:
        if exceptions:
            try:
                _raise(10, i)
            except ValueError:
                t0 = time.perf_counter_ns()
                logger.exception("order %s failed for customer %s", i, "c-42")
                latencies.append(time.perf_counter_ns() - t0)
        else:
            t0 = time.perf_counter_ns()
            logger.error("order %s failed for customer %s", i, "c-42")
            latencies.append(time.perf_counter_ns() - t0)

    dog.enter("warm-up", slack)
    for i in range(spec["warmup"]):
        call(i)
    sdk.flush(10.0)
    latencies.clear()
    gc.collect()
    sink.reset()
    result["_base"] = sdk.count() if sdk.count else 0
    mode, wait = SCENARIOS[scenario]
    sink.mode(**mode)
    rss_before = _rss_mb()

    dog.enter("calls", spec["call_budget"])
    started = time.monotonic()
    for i in range(n):
        result["_call_started"] = time.monotonic()
        call(i)
    calls_s = time.monotonic() - started
    result.update(
        latency_us=percentiles(latencies),
        calls_per_s=n / calls_s if calls_s else None,
        calls_s=calls_s,
    )

    flush_budget = spec["flush_budget"] if wait is None else min(wait, spec["flush_budget"])
    _deliver_and_stop(spec, sdk, sink, dog, result, flush_budget, started)
    result["rss_growth_mb"] = _rss_mb() - rss_before
    dog.enter("exit", 3600)  # the parent times the exit from here
    emit(result)


def _deliver_and_stop(
    spec: dict[str, Any],
    sdk: Any,
    sink: SinkControl,
    dog: Watchdog,
    result: dict[str, Any],
    flush_budget: float,
    started: float,
) -> None:
    """Flush, count what the sink accepted, shut the SDK down, count again."""
    n, slack = int(spec["n"]), float(spec.get("slack", 30.0))
    dog.enter("flush", flush_budget + slack)
    t0 = time.monotonic()
    flushed = sdk.flush(flush_budget)
    result["flush_s"] = time.monotonic() - t0
    result["flush_ok"] = None if flushed is None else bool(flushed)
    if sdk.delivers:
        counts = _settle(sink, sdk.count, result["_base"])
        result["delivered"] = counts["events"]
        result["refused_requests"] = counts["refused"]
        span = counts["last_at"] - started if counts["events"] else 0.0
        result["delivered_per_s"] = counts["events"] / span if span > 0 else 0.0
    dog.enter("shutdown", spec["shutdown_budget"] + slack)
    t0 = time.monotonic()
    sdk.shutdown(spec["shutdown_budget"])
    result["shutdown_s"] = time.monotonic() - t0
    if sdk.delivers:
        final = sdk.count() - result["_base"] if sdk.count else sink.count()["events"]
        result["delivered_final"] = final
        result["lost"] = max(0, n - final)
    result["sdk_stats"] = sdk.stats()


def _settle(
    sink: SinkControl, count: Any = None, base: int = 0, quiet: float = 0.3
) -> dict[str, Any]:
    """The sink's counts once they have stopped moving for ``quiet`` seconds; with ``count``
    (Redis) the events are counted there, and the last change is timed here."""
    if count is not None:
        events, changed = count() - base, time.monotonic()
        while time.monotonic() - changed < quiet:
            time.sleep(0.02)
            now = count() - base
            if now != events:
                events, changed = now, time.monotonic()
        return {"events": events, "refused": 0, "last_at": changed}
    last = sink.count()
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < quiet:
        time.sleep(0.05)
        now = sink.count()
        if now["events"] != last["events"] or now["refused"] != last["refused"]:
            last, stable_since = now, time.monotonic()
    return last


def run_memory(spec: dict[str, Any]) -> None:
    """RSS growth while ``n`` events pile up against a dead destination (connection refused)."""
    from bench.cases import CASES
    from bench.sink import free_port

    n, case = int(spec["n"]), spec["case"]
    result: dict[str, Any] = {"case": case, "scenario": "memory", "n": n}
    Watchdog(result, []).enter("memory", spec["call_budget"] + spec["shutdown_budget"] + 60)
    sdk = CASES[case][0](f"http://127.0.0.1:{free_port()}")  # nothing listens there
    for i in range(100):
        sdk.logger.error("warm-up %s", i)
    time.sleep(0.5)
    gc.collect()
    before = _rss_mb()
    started = time.monotonic()
    for i in range(n):
        sdk.logger.error("order %s failed for customer %s", i, "c-42")
    result["calls_s"] = time.monotonic() - started
    result["rss_after_calls_mb"] = _rss_mb() - before
    time.sleep(2.0)  # let the pipeline move what it took into its queues
    gc.collect()
    result["rss_growth_mb"] = _rss_mb() - before
    result["sdk_stats"] = sdk.stats()
    t0 = time.monotonic()
    sdk.shutdown(spec["shutdown_budget"])
    result["shutdown_s"] = time.monotonic() - t0
    emit(result)


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    if spec["scenario"] == "memory":
        run_memory(spec)
    else:
        run(spec)
