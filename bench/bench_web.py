"""What the web integrations cost a request: Django and Flask, middleware on against off.

Run from the repository root (extras ``bench`` and ``test``)::

    python -m bench.bench_web [--number 2000] [--repeat 7] [--instructions] [--json FILE]

Each framework serves a trivial view (``HttpResponse("ok")``, ``return "ok"``) through its real
WSGI entry point, called in-process with a prepared environ (no sockets: the server's cost would
only hide the middleware's), the body read and ``close()`` called as a WSGI server does. Two apps
per framework, built in the same process, one plain and one with alertkit's integration
(``alertkit.integrations.django.AlertkitMiddleware`` in ``MIDDLEWARE``;
``alertkit.integrations.flask.init_app``), reporting to an in-memory backend. Their runs
alternate, so a change of the machine's speed hits both alike; each run times ``--number``
requests in CPU time of the thread (``time.thread_time``: a loaded machine's waits for a core are
left out), and the best of ``--repeat`` runs is kept. The same apps are also timed through the
framework's test client; with ``--server``, served over keep-alive HTTP by waitress too (one
worker thread, in a subprocess per app), counting the server process's CPU time per request (its
clock ticks are 10 ms, hence four times as many requests; on a loaded machine its spread is wide).
The peer row runs sentry-sdk's own Django or
Flask integration (errors only, no tracing, no DSN reachable) in a subprocess of its own, as
sentry patches the framework process-wide, against a plain app in that same subprocess.

With ``--instructions`` (valgrind installed) each app's requests are also counted in CPU
instructions under callgrind: exact and repeatable, where time on a shared machine is not (the
median of four hash seeds: an interpreter's memory layout moves a count by 1-2%).

The target is an overhead of at most 5% on the trivial view; a real view (a database query, a
template) makes the same absolute cost a smaller share.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]


def environ(path: str = "/ok") -> Environ:
    """A GET as a WSGI server passes it, with a browser's usual headers."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml",
        "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.8",
        "HTTP_COOKIE": "sessionid=abc; csrftoken=def",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


def time_requests(app: WSGIApp, number: int) -> float:
    """Microseconds of CPU per request, over ``number`` requests."""
    base = environ()
    started = time.thread_time()
    for _ in range(number):
        request = dict(base)
        request["wsgi.input"] = io.BytesIO()
        result = app(request, _start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return (time.thread_time() - started) / number * 1e6


def time_test_client(app: WSGIApp, number: int) -> float:
    """Microseconds of CPU per request made through the framework's own test client."""
    if hasattr(app, "test_client"):  # Flask
        http = app.test_client()
        get: Callable[[str], Any] = http.get
    else:  # a Django WSGIHandler: Django's test client builds its own handler from settings
        from django.test import Client as DjangoClient

        http = DjangoClient()
        http.handler = _WithHandler(app)
        get = http.get
    started = time.thread_time()
    for _ in range(number):
        get("/ok")
    return (time.thread_time() - started) / number * 1e6


class _WithHandler:
    """Django's test ``ClientHandler`` bound to a given WSGIHandler's middleware chain."""

    def __init__(self, handler: Any) -> None:
        from django.test.client import ClientHandler

        self.inner = ClientHandler()
        self.inner._middleware_chain = handler._middleware_chain
        self.inner._view_middleware = handler._view_middleware
        self.inner._template_response_middleware = handler._template_response_middleware
        self.inner._exception_middleware = handler._exception_middleware

    def __call__(self, environ: Environ) -> Any:
        return self.inner(environ)


HARNESSES: dict[str, Callable[[WSGIApp, int], float]] = {
    "wsgi": time_requests,
    "test client": time_test_client,
}


def compare(
    plain: WSGIApp, tracked: WSGIApp, number: int, repeat: int, harness: str = "wsgi"
) -> dict[str, float]:
    """Alternating runs of both apps; the best of each, and their ratio."""
    timer = HARNESSES[harness]
    for app in (plain, tracked):  # warm up: imports, URL resolver caches, the client's threads
        timer(app, max(50, number // 10))
    off: list[float] = []
    on: list[float] = []
    for run in range(repeat):  # the order alternates too: no side always runs second
        if run % 2:
            on.append(timer(tracked, number))
            off.append(timer(plain, number))
        else:
            off.append(timer(plain, number))
            on.append(timer(tracked, number))
    best_off, best_on = min(off), min(on)
    return {"off_us": best_off, "on_us": best_on, "ratio": best_on / best_off}


# -- the apps -----------------------------------------------------------------------------------


def django_apps(client: Any) -> tuple[WSGIApp, WSGIApp]:
    """Two Django WSGI handlers of one project: without and with the middleware."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench-only",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF="bench.bench_web",
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    plain = WSGIHandler()
    settings.MIDDLEWARE = ["alertkit.integrations.django.AlertkitMiddleware"]
    tracked = WSGIHandler()
    settings.MIDDLEWARE = []
    return plain, tracked


def _django_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def __getattr__(name: str) -> Any:
    """``urlpatterns`` for Django's ROOT_URLCONF, made on first use (Django imported then)."""
    if name == "urlpatterns":
        from django.urls import path

        return [path("ok", _django_view, name="ok")]
    raise AttributeError(name)


def flask_apps(client: Any) -> tuple[WSGIApp, WSGIApp]:
    """Two Flask apps with the same view: without and with ``init_app``."""
    from flask import Flask

    from alertkit.integrations.flask import init_app

    def make() -> Flask:
        app = Flask("bench")
        app.add_url_rule("/ok", "ok", lambda: "ok")
        return app

    return make(), init_app(make(), client=client)


def _bare(framework: str) -> WSGIApp:
    """A plain app of ``framework`` serving the trivial view."""
    if framework == "django":
        return django_apps(None)[0]
    from flask import Flask

    app = Flask("bench")
    app.add_url_rule("/ok", "ok", lambda: "ok")
    return app


def peer_run(framework: str, number: int, repeat: int) -> dict[str, float]:
    """sentry-sdk's integration for ``framework`` against a plain app, in this process.

    Sentry patches the framework's classes at ``init``, so the plain runs come first and the
    patched ones after (not alternating): the comparison is as fair as one process allows.
    """
    import sentry_sdk

    def best(app: WSGIApp) -> float:
        time_requests(app, max(50, number // 10))
        return min(time_requests(app, number) for _ in range(repeat))

    off = best(_bare(framework))
    if framework == "django":
        from sentry_sdk.integrations.django import DjangoIntegration

        integration: Any = DjangoIntegration()
    else:
        from sentry_sdk.integrations.flask import FlaskIntegration

        integration = FlaskIntegration()
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",  # the discard port: nothing is sent on success anyway
        integrations=[integration],
        default_integrations=False,
        traces_sample_rate=None,
    )
    on = best(_bare(framework))
    return {"off_us": off, "on_us": on, "ratio": on / off}


def serve(framework: str, tracked: bool) -> None:
    """Serve the trivial view with waitress (one worker thread) on a free port; print the port.

    Run in a subprocess by :func:`server_compare`; ends when its stdin closes.
    """
    import logging
    import threading

    from waitress import create_server

    logging.getLogger("waitress").setLevel(logging.ERROR)  # "Task queue depth" on every request

    import alertkit
    from alertkit.testing import MemoryBackend

    # The default client: Django's middleware reports through it (no settings.ALERTKIT here).
    client = alertkit.init(backends=[MemoryBackend()], sample_system=False, register_atexit=False)
    plain, with_alertkit = (django_apps if framework == "django" else flask_apps)(client)
    server = create_server(with_alertkit if tracked else plain, host="127.0.0.1", port=0, threads=1)
    print(server.effective_port, flush=True)  # type: ignore[union-attr]
    threading.Thread(target=server.run, daemon=True).start()
    sys.stdin.read()  # until the parent closes it
    client.shutdown(1)


def server_compare(framework: str, number: int, repeat: int) -> dict[str, float]:
    """Server CPU per request (all its threads) over keep-alive HTTP, plain against tracked."""
    import http.client

    import psutil

    servers: dict[bool, subprocess.Popen[str]] = {}
    ports: dict[bool, int] = {}
    try:
        for tracked in (False, True):
            code = f"import bench.bench_web as b; b.serve({framework!r}, {tracked})"
            process = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            servers[tracked] = process
            assert process.stdout is not None
            ports[tracked] = int(process.stdout.readline())

        def cpu_per_request(tracked: bool, count: int) -> float:
            connection = http.client.HTTPConnection("127.0.0.1", ports[tracked], timeout=10)
            cpu = psutil.Process(servers[tracked].pid)
            before = cpu.cpu_times()
            for _ in range(count):
                connection.request("GET", "/ok", headers={"Host": "testserver"})
                reply = connection.getresponse()
                reply.read()
                assert reply.status == 200, reply.status
            after = cpu.cpu_times()
            connection.close()
            used = (after.user - before.user) + (after.system - before.system)
            return used / count * 1e6

        for tracked in (False, True):
            cpu_per_request(tracked, max(200, number // 5))
        off: list[float] = []
        on: list[float] = []
        for run in range(repeat):
            for tracked in (False, True) if run % 2 == 0 else (True, False):
                (on if tracked else off).append(cpu_per_request(tracked, number))
        return {"off_us": min(off), "on_us": min(on), "ratio": min(on) / min(off)}
    finally:
        for process in servers.values():
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def run_requests(framework: str, tracked: bool, number: int) -> None:
    """Serve ``number`` requests in-process to one app (after 200 to warm up): what
    :func:`count_instructions` runs under callgrind."""
    import alertkit
    from alertkit.testing import MemoryBackend

    client = alertkit.init(backends=[MemoryBackend()], sample_system=False, register_atexit=False)
    plain, with_alertkit = (django_apps if framework == "django" else flask_apps)(client)
    app = with_alertkit if tracked else plain
    time_requests(app, 200)
    if number:
        time_requests(app, number)
    client.shutdown(2)


def count_instructions(framework: str, number: int, seeds: int = 4) -> dict[str, float]:
    """Instructions per request (valgrind's callgrind), plain against tracked: deterministic,
    unlike time on a shared machine. Each app runs in a fresh interpreter twice, with no requests
    and with ``number``; the difference is what the requests cost. The memory layout of an
    interpreter moves a plain app's count by 1-2% from one hash seed to the next, as much as the
    difference measured: each pair runs under ``seeds`` hash seeds (two at a time), and the
    median ratio is kept, with the range."""

    def total(tracked: bool, count: int, seed: int) -> int:
        code = f"import bench.bench_web as b; b.run_requests({framework!r}, {tracked}, {count})"
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "callgrind.out"
            valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            subprocess.run(
                [*valgrind, sys.executable, "-c", code],
                cwd=ROOT,
                env={**os.environ, "PYTHONHASHSEED": str(seed)},  # the same layouts every run
                capture_output=True,
                timeout=900,
                check=True,
            )
            lines = out.read_text().splitlines()
        return int(next(line for line in lines if line.startswith("summary:")).split()[1])

    runs = [
        (tracked, count, seed)
        for seed in range(seeds)
        for tracked in (False, True)
        for count in (0, number)
    ]
    with ThreadPoolExecutor(2) as pool:
        totals = dict(zip(runs, pool.map(lambda run: total(*run), runs), strict=True))
    per = {
        (tracked, seed): (totals[tracked, number, seed] - totals[tracked, 0, seed]) / number
        for tracked in (False, True)
        for seed in range(seeds)
    }
    ratios = sorted(per[True, seed] / per[False, seed] for seed in range(seeds))
    return {
        "off_us": statistics.median(per[False, seed] for seed in range(seeds)),
        "on_us": statistics.median(per[True, seed] for seed in range(seeds)),
        "ratio": statistics.median(ratios),
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
    }


def run_peer(framework: str, number: int, repeat: int) -> dict[str, float] | None:
    """:func:`peer_run` in a fresh interpreter (sentry patches the framework process-wide)."""
    code = (
        "import json, bench.bench_web as b; "
        f"print(json.dumps(b.peer_run({framework!r}, {number}, {repeat})))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"sentry-sdk {framework}: not measured ({exc})", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="requests per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs per app; the best is kept")
    parser.add_argument("--no-peer", action="store_true", help="skip the sentry-sdk rows")
    parser.add_argument(
        "--server",
        action="store_true",
        help="also serve over HTTP with waitress and count the server's CPU (noisy on a shared VM)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per request with valgrind's callgrind (minutes; exact)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    import alertkit
    from alertkit.testing import MemoryBackend

    memory = MemoryBackend()
    # The default client: Django's middleware reports through it (no settings.ALERTKIT here),
    # without the system sampler a default client would run.
    client = alertkit.init(backends=[memory], sample_system=False, register_atexit=False)
    rows: dict[str, dict[str, float]] = {}
    try:
        for name, make in (("django", django_apps), ("flask", flask_apps)):
            plain, tracked = make(client)
            for harness in HARNESSES:
                rows[f"{name} + alertkit, {harness}"] = compare(
                    plain, tracked, args.number, args.repeat, harness
                )
        assert client.flush(5) and not memory.envelopes, "a trivial view reported something"
    finally:
        client.shutdown(2)
    if args.server:
        for name in ("django", "flask"):
            rows[f"{name} + alertkit, waitress"] = server_compare(
                name, args.number * 4, args.repeat
            )
    if args.instructions:
        for name in ("django", "flask"):
            rows[f"{name} + alertkit, wsgi, instructions"] = count_instructions(name, args.number)
    if not args.no_peer:
        for name in ("django", "flask"):
            peer = run_peer(name, args.number, args.repeat)
            if peer is not None:
                rows[f"{name} + sentry-sdk, wsgi"] = peer
    print("| app, harness | off (us or instructions a request) | on | on / off | overhead |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in rows.items():
        spread = (
            f" ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}, by hash seed)"
            if "ratio_min" in row
            else ""
        )
        print(
            f"| {name} | {row['off_us']:.1f} | {row['on_us']:.1f} | {row['ratio']:.3f}{spread} "
            f"| {(row['ratio'] - 1) * 100:+.1f}% |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"number": args.number, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
