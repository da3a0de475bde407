"""OTLP logs: alertkit's batched OTLP backend against its per-event HTTP backend and against the
official OpenTelemetry SDK (``LoggingHandler`` + ``BatchLogRecordProcessor`` + ``OTLPLogExporter``
over HTTP/protobuf), all into the same local receiver, in the same run.

Run from the repository root (``pip install -e '.[bench,test]'`` first)::

    python -m bench.bench_otlp [--n 20000] [--http-n 3000] [--repeat 3]

The receiver is a process of its own (so that it does not share the GIL with the code measured):
a threaded HTTP/1.1 server on 127.0.0.1 that decodes every ``/v1/logs`` request with the
official ``opentelemetry-proto`` classes and counts the log records in it, and counts each
``/v1/events`` request (the HTTP backend's) as one event. Each case runs in a fresh interpreter
and logs through ``logging.getLogger("bench.otlp")`` the same way:
``logger.error("order %d failed", i, extra={"order": i, "region": "eu"})``. Breadcrumbs are on
(the default); an OTLP record has no place for them, so a client sending only over OTLP takes no
trail: ``alertkit-otlp-hook`` adds a pass-through processor of the application's, for which the
trail is taken (made, scrubbed, bounded) as for every destination that sends it.

Per case:

* **delivered/s**: events the receiver decoded, divided by the time from the first logging call
  until the receiver has counted all of them;
* **caller CPU per call** (``time.thread_time``: the logging thread's own CPU, waits for the GIL
  left out) and wall time per call, over the logging loop.

Every queue is sized for the whole run, so no case drops (a drop is reported, not hidden). Also
measured: the cost per record of alertkit's hand-written protobuf encoder against filling and
serialising the official ``opentelemetry-proto`` messages for the same records. Prints Markdown
tables with ratios and writes ``bench/results/otlp.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


# -- the receiver (its own process) ----------------------------------------------------------------


class _Counts:
    lock = threading.Lock()
    records = 0
    requests = 0
    undecodable = 0


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with _Counts.lock:
            data = {
                "records": _Counts.records,
                "requests": _Counts.requests,
                "undecodable": _Counts.undecodable,
            }
        self._answer(200, json.dumps(data).encode(), "application/json")

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/reset":
            with _Counts.lock:
                _Counts.records = _Counts.requests = _Counts.undecodable = 0
            self._answer(200, b"{}", "application/json")
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        count = 1
        if self.path.startswith("/null?n="):
            count = int(self.path.partition("=")[2])
        if self.path == "/v1/logs":
            try:
                message = ExportLogsServiceRequest.FromString(body)
                count = sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)
            except Exception:
                with _Counts.lock:
                    _Counts.undecodable += 1
                self._answer(400, b"undecodable", "text/plain")
                return
        with _Counts.lock:
            _Counts.records += count
            _Counts.requests += 1
        if self.path == "/v1/logs":
            self._answer(200, b"", "application/x-protobuf")
        else:
            self._answer(200, b"{}", "application/json")


def serve(port_file: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    server.request_queue_size = 128
    Path(port_file).write_text(str(server.server_address[1]))
    threading.Timer(3600, server.shutdown).start()  # bounded: never outlives an hour
    server.serve_forever(poll_interval=0.05)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _reset(url: str) -> None:
    urllib.request.urlopen(
        urllib.request.Request(f"{url}/reset", data=b"", method="POST"), timeout=5
    ).read()


# -- the cases (each in a fresh interpreter) ---------------------------------------------------------


def _logger() -> logging.Logger:
    logger = logging.getLogger("bench.otlp")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _setup_alertkit(url: str, n: int, backend: str) -> tuple[logging.Handler, Any]:
    from alertkit import AlertHandler, Client
    from alertkit.backends.http import HttpBackend
    from alertkit.backends.otlp import OtlpBackend

    chosen: Any
    hooks: dict[str, Any] = {}
    if backend == "otlp-hook":  # a processor of the application's may read the trail: taken
        chosen = OtlpBackend(url)
        hooks["processors"] = [lambda envelope: envelope]
    elif backend == "otlp":
        chosen = OtlpBackend(url)
    elif backend == "http":
        chosen = HttpBackend(f"{url}/v1/events", api_key="bench")
    else:
        chosen = _null_backend(url)
    client = Client(
        backends=[chosen],
        sample_system=False,
        register_atexit=False,
        queue_size=n + 100,
        app_name="bench",
        **hooks,
    )
    return AlertHandler(client=client, level=logging.INFO), client


def _setup_otel(url: str, n: int) -> tuple[logging.Handler, Any]:
    import warnings

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip)
    # Its defaults (queue 2048, batches of 512, 1 s delay) would drop most of a burst: the queue
    # is sized for the run, as alertkit's is.
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=n + 100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    return handler, provider


class _Nothing(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        """Drop the record: what ``logging`` itself costs the caller, the same for every case."""


def _fail(depth: int, order: int) -> None:
    if depth:
        _fail(depth - 1, order)
    raise ValueError(f"order {order} refused")


def _calls(logger: logging.Logger, n: int, scenario: str) -> tuple[float, float]:
    """The n logging calls of a scenario; the caller's (CPU, wall) seconds for them.

    ``error``: ``logger.error`` with a message argument and two ``extra`` fields; ``exception``:
    the same through ``logger.exception`` for an exception raised ten frames down.
    """
    cpu0, started = time.thread_time(), time.perf_counter()
    if scenario == "error":
        for i in range(n):
            logger.error("order %d failed", i, extra={"order": i, "region": "eu"})
    else:
        for i in range(n):
            try:
                _fail(9, i)
            except ValueError:
                logger.exception("order %d failed", i, extra={"order": i, "region": "eu"})
    return time.thread_time() - cpu0, time.perf_counter() - started


def _logging_only(n: int, scenario: str) -> dict[str, Any]:
    logger = _logger()
    logger.addHandler(_Nothing())
    cpu, wall = _calls(logger, n, scenario)
    return {
        "case": "logging-only",
        "n": n,
        "caller_cpu_us": cpu / n * 1e6,
        "caller_wall_us": wall / n * 1e6,
    }


def _null_backend(url: str) -> Any:
    """Accepts every batch at once, telling the receiver how many events it held (so the
    harness counts them the same way): the OTLP pipeline's own ceiling, without encoding or I/O
    (and, as OTLP, without breadcrumbs on the wire)."""
    from alertkit.backends.base import BaseBackend
    from alertkit.model.outcomes import Delivered

    class Null(BaseBackend):
        scheme = "null"
        max_batch = 512
        max_concurrency = 2
        sends_breadcrumbs = False

        def send(self, batch: Any) -> Any:
            request = urllib.request.Request(f"{url}/null?n={len(batch)}", data=b"", method="POST")
            urllib.request.urlopen(request, timeout=5).read()
            return [Delivered()] * len(batch)

    return Null()


def run_case(case: str, url: str, n: int, scenario: str) -> dict[str, Any]:
    if case == "logging-only":
        return _logging_only(n, scenario)
    logger = _logger()
    if case == "otel-sdk":
        handler, owner = _setup_otel(url, n)
    else:
        handler, owner = _setup_alertkit(url, n, case.removeprefix("alertkit-"))
    logger.addHandler(handler)
    logger.error("warm-up %d", -1, extra={"order": -1, "region": "eu"})
    deadline = time.monotonic() + 30
    while _get(url)["records"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    _reset(url)
    started = time.perf_counter()
    cpu, wall = _calls(logger, n, scenario)
    deadline = time.monotonic() + 300
    counts = _get(url)
    while counts["records"] < n and time.monotonic() < deadline:
        time.sleep(0.01)
        counts = _get(url)
    elapsed = time.perf_counter() - started
    logger.removeHandler(handler)
    if case == "otel-sdk":
        owner.shutdown()
    else:
        owner.shutdown(5)
    return {
        "case": case,
        "n": n,
        "delivered": counts["records"],
        "requests": counts["requests"],
        "undecodable": counts["undecodable"],
        "delivered_per_s": counts["records"] / elapsed,
        "caller_cpu_us": cpu / n * 1e6,
        "caller_wall_us": wall / n * 1e6,
    }


# -- the encoders ----------------------------------------------------------------------------------


def bench_encoders(records: int = 512, rounds: int = 40) -> dict[str, float]:
    """Microseconds per record: alertkit's encoder against the official messages, same records."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    from alertkit.backends import _otlp_wire as wire
    from alertkit.backends.otlp import to_record
    from alertkit.model.event import AppEvent, CodeLocation, Envelope

    envelopes = [
        Envelope(
            event=AppEvent(
                api_key="",
                classification="issue",
                event_type="t",
                event_message=f"order {i} failed",
                log_level="error",
                event_time=0,
            ),
            logger_name="bench.otlp",
            details={"order": i, "region": "eu"},
            tags={"release": "2.4.1"},
            code_location=CodeLocation("checkout", "/srv/app/shop.py", 42),
        )
        for i in range(records)
    ]
    resource = [("service.name", "bench"), ("host.name", "h")]

    def any_value(value: Any) -> AnyValue:
        if isinstance(value, str):
            return AnyValue(string_value=value)
        if isinstance(value, bool):
            return AnyValue(bool_value=value)
        if isinstance(value, int):
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))

    def official() -> bytes:
        logs = []
        for envelope in envelopes:
            record = to_record(envelope)
            logs.append(
                LogRecord(
                    time_unix_nano=record.time_unix_nano,
                    observed_time_unix_nano=record.time_unix_nano,
                    severity_number=record.severity_number,  # type: ignore[arg-type]
                    severity_text=record.severity_text,
                    body=AnyValue(string_value=record.body),
                    attributes=[KeyValue(key=k, value=any_value(v)) for k, v in record.attributes],
                )
            )
        request = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=Resource(
                        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in resource]
                    ),
                    scope_logs=[
                        ScopeLogs(scope=InstrumentationScope(name="bench.otlp"), log_records=logs)
                    ],
                )
            ]
        )
        return request.SerializeToString()

    def own() -> bytes:
        encoded = [wire.record_protobuf(to_record(envelope)) for envelope in envelopes]
        return wire.request_protobuf(
            wire.resource_protobuf(resource), [(wire.scope_protobuf("bench.otlp", ""), encoded)]
        )

    def mapping_only() -> None:
        for envelope in envelopes:
            to_record(envelope)

    assert ExportLogsServiceRequest.FromString(own()) == ExportLogsServiceRequest.FromString(
        official()
    )
    result = {}
    for name, function in (("official", official), ("alertkit", own), ("mapping", mapping_only)):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(rounds):
                function()
            best = min(best, time.perf_counter() - started)
        result[name] = best / (rounds * records) * 1e6
    return result


# -- the harness -------------------------------------------------------------------------------------


def _child(case: str, url: str, n: int, scenario: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    command = ["--case", case, "--url", url, "--n", str(n), "--scenarios", scenario]
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_otlp", *command],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="events per OTLP case")
    parser.add_argument(
        "--http-n", type=int, default=3000, help="events for the per-event HTTP case"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default="error,exception")
    parser.add_argument("--out", default=str(RESULTS / "otlp.json"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.case:
        print(json.dumps(run_case(args.case, args.url, args.n, args.scenarios)))
        return
    port_file = Path(tempfile.mkdtemp(prefix="alertkit-otlp-bench-")) / "port"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_otlp", "--serve", str(port_file)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise SystemExit("the receiver did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        cases = (
            "alertkit-otlp",
            "otel-sdk",
            "alertkit-http",
            "alertkit-null",
            "alertkit-otlp-hook",
            "logging-only",
        )
        scenarios: dict[str, dict[str, list[dict[str, Any]]]] = {
            scenario: {case: [] for case in cases} for scenario in args.scenarios.split(",")
        }
        for _ in range(args.repeat):
            for scenario, runs in scenarios.items():
                for case, results in runs.items():
                    n = args.http_n if case == "alertkit-http" else args.n
                    results.append(_child(case, url, n, scenario))
        encoders = bench_encoders()
    finally:
        receiver.terminate()
        receiver.wait(10)
        port_file.unlink(missing_ok=True)
        port_file.parent.rmdir()
    ratios = {scenario: report(scenario, runs, args) for scenario, runs in scenarios.items()}
    print("\n| protobuf encoding, µs per record | value |")
    print("| --- | ---: |")
    print(f"| event to record mapping (both) | {encoders['mapping']:.2f} |")
    print(f"| mapping + official opentelemetry-proto messages | {encoders['official']:.2f} |")
    print(f"| mapping + alertkit's encoder | {encoders['alertkit']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "scenarios": {
            scenario: {"runs": runs, "ratios": ratios[scenario]}
            for scenario, runs in scenarios.items()
        },
        "encoder_us_per_record": encoders,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each measure's best over the repeats (the run least disturbed by the shared machine):
    the highest delivered rate, the lowest caller costs."""
    best = dict(max(runs, key=lambda run: run.get("delivered_per_s", 0.0)))
    for measure in ("caller_cpu_us", "caller_wall_us"):
        best[measure] = min(run[measure] for run in runs)
    return best


def report(
    scenario: str, runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Print one scenario's tables; return its ratios, one per repeat."""
    best = {case: _best(results) for case, results in runs.items()}
    base = best["logging-only"]["caller_cpu_us"]
    print(
        f"\n## OTLP logs, scenario {scenario}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, best of {args.repeat}\n"
    )
    print(
        "| case | events | delivered | requests | delivered/s | caller CPU µs/call "
        "| of which the handler's | caller wall µs/call |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, run in best.items():
        delivered = (
            f"{run['delivered']} | {run['requests']} | {run['delivered_per_s']:,.0f}"
            if "delivered" in run
            else "- | - | -"
        )
        print(
            f"| {case} | {run['n']} | {delivered} | {run['caller_cpu_us']:.1f} "
            f"| {max(0.0, run['caller_cpu_us'] - base):.1f} | {run['caller_wall_us']:.1f} |"
        )

    def per_repeat(measure: Any) -> list[float]:
        """A ratio in each repeat, from the runs made one after the other in it (same load)."""
        count = min(len(results) for results in runs.values())
        return [measure({case: results[k] for case, results in runs.items()}) for k in range(count)]

    def handler_share(run: dict[str, Any]) -> float:
        return float(
            run["alertkit-otlp"]["caller_cpu_us"] - run["logging-only"]["caller_cpu_us"]
        ) / max(1e-9, run["otel-sdk"]["caller_cpu_us"] - run["logging-only"]["caller_cpu_us"])

    measures: dict[str, tuple[str, str, Any]] = {
        "otlp_vs_per_event_http_rate": (
            "alertkit OTLP / per-event HTTP, delivered/s",
            ">= 10",
            lambda r: r["alertkit-otlp"]["delivered_per_s"] / r["alertkit-http"]["delivered_per_s"],
        ),
        "otlp_hook_vs_per_event_http_rate": (
            "the same, with a processor (the trail made, scrubbed and bounded for it)",
            "-",
            lambda r: (
                r["alertkit-otlp-hook"]["delivered_per_s"] / r["alertkit-http"]["delivered_per_s"]
            ),
        ),
        "otlp_vs_otel_sdk_rate": (
            "alertkit OTLP / OpenTelemetry SDK, delivered/s",
            ">= 1",
            lambda r: r["alertkit-otlp"]["delivered_per_s"] / r["otel-sdk"]["delivered_per_s"],
        ),
        "otlp_vs_pipeline_ceiling": (
            "alertkit OTLP / the same pipeline into a null backend, delivered/s",
            "-",
            lambda r: r["alertkit-otlp"]["delivered_per_s"] / r["alertkit-null"]["delivered_per_s"],
        ),
        "caller_cpu_otlp_over_otel_sdk": (
            "alertkit caller CPU / OpenTelemetry SDK's, whole logging call",
            "-",
            lambda r: r["alertkit-otlp"]["caller_cpu_us"] / r["otel-sdk"]["caller_cpu_us"],
        ),
        "handler_cpu_otlp_over_otel_sdk": (
            "the same, the handler's part (logging's own record cost taken out)",
            "< 0.1",
            handler_share,
        ),
    }
    ratios = {key: per_repeat(measure) for key, (_, _, measure) in measures.items()}
    print(
        "\n| ratio (median of the repeats; each repeat's cases run back to back) | median | range | target |"
    )
    print("| --- | ---: | ---: | --- |")
    for key, (label, target, _) in measures.items():
        values = ratios[key]
        print(
            f"| {label} | {statistics.median(values):.3f} | {min(values):.3f}-{max(values):.3f} | {target} |"
        )
    return ratios


if __name__ == "__main__":
    main()
