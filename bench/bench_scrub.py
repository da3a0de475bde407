"""The scrubber's cost per text and per envelope, against an earlier version of it.

Run from the repository root::

    python -m bench.bench_scrub [--against 2ae4fab] [--number 20000] [--repeat 7]

The scrubber runs on the policy thread for every event, so its cost on a text with nothing to mask
(the common case) bounds how many events per second the pipeline can take. Each case is timed with
``timeit`` in CPU time of the thread (``time.thread_time``: a loaded machine's waits for a core
are left out), best of ``--repeat`` runs of ``--number`` calls (a quarter of that for envelopes),
in microseconds per call, for the working tree's :mod:`alertkit.policy.scrub` and for ``alertkit/scrub.py`` as it was at the git revision
``--against`` (default: the last version before the free-text pass), loaded beside it; the ratio
is after / before. Both run in the same process, their runs alternating, so a change of the machine's speed
hits both alike. Prints a Markdown table; ``--json`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

import alertkit.policy.scrub
from alertkit.model.event import AppEvent, Envelope, InnerStackTrace
from alertkit.model.stacktrace import build_stacktrace, format_exception_text

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "2ae4fab"  # the scrubber before the free-text pass (pairs, URLs, headers anywhere)


def load_scrub_at(revision: str) -> ModuleType:
    """``alertkit/scrub.py`` of ``revision`` as a module of its own (it imports today's alertkit)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:alertkit/scrub.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location(f"scrub_at_{revision}", file.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Path(file.name).unlink()
    return module


def _traceback_text() -> tuple[str, list[InnerStackTrace]]:
    """A real ten-frame traceback, as the handler would format it."""

    def dive(depth: int) -> None:
        if depth == 0:
            raise ValueError("invalid literal for int() with base 10: 'abc'")
        dive(depth - 1)

    try:
        dive(9)
    except ValueError as exc:
        return format_exception_text((type(exc), exc, exc.__traceback__)), build_stacktrace(exc)
    raise AssertionError("unreachable")


def _event(message: str, **fields: Any) -> AppEvent:
    return AppEvent(
        api_key="",
        classification="issue",
        event_type="OrderFailed",
        event_message=message,
        **fields,
    )


def cases() -> dict[str, tuple[str, Any]]:
    """name -> (``"text"`` or ``"envelope"``, the input)."""
    exc_text, stack = _traceback_text()
    return {
        "plain message": ("text", "order 42 failed for customer c-42"),
        "message with a colon": ("text", "ValueError: invalid literal for int() with base 10: 'x'"),
        "message with a URL": ("text", "GET https://api.example/v1/orders?page=2 returned 500"),
        "ten-frame traceback text": ("text", exc_text),
        "message with a secret pair": ("text", "login failed: password=hunter2 user=jill"),
        "message with a cookie header": ("text", "request failed with Cookie: a=1; sid=abc123"),
        "log event, one extra field": (
            "envelope",
            Envelope(
                event=_event("order 42 failed for customer c-42"),
                details={"i": 42},
                template="order %s failed for customer %s",
            ),
        ),
        "log event with a ten-frame exception": (
            "envelope",
            Envelope(
                event=_event("order 42 failed", event_stacktrace=stack),
                details={"order": "42", "customer": "c-42"},
                template="order %s failed",
                exc_text=exc_text,
            ),
        ),
        "log event with secrets": (
            "envelope",
            Envelope(
                event=_event("login failed: password=hunter2"),
                details={"password": "hunter2", "note": "POST https://x/cb?token=t returned 500"},
                template="login failed: password=%s",
            ),
        ),
    }


def run(against: str | None, number: int, repeat: int) -> list[dict[str, Any]]:
    """Each case timed ``repeat`` times per version, the versions alternating; best kept."""
    versions: dict[str, ModuleType] = {"after": alertkit.policy.scrub}
    if against:
        versions["before"] = load_scrub_at(against)
    rows = []
    for name, (kind, value) in cases().items():
        calls = {}
        for label, module in versions.items():
            scrubber = module.Scrubber()
            target = scrubber.scrub_text if kind == "text" else scrubber
            calls[label] = functools.partial(target, value)
            calls[label]()  # warm the caches a long-running process has warm
        count = number if kind == "text" else max(1, number // 4)
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(repeat):
            for label, call in calls.items():
                best[label] = min(
                    best[label],
                    timeit.timeit(call, number=count, timer=time.thread_time) / count * 1e6,
                )
        row: dict[str, Any] = {"case": name, **best}
        if "before" in row:
            row["ratio"] = row["after"] / row["before"]
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], against: str | None) -> str:
    if not against:
        lines = ["| case | µs per call |", "| --- | ---: |"]
        lines += [f"| {row['case']} | {row['after']:.2f} |" for row in rows]
        return "\n".join(lines)
    lines = [
        f"| case | before ({against}) µs | after µs | after / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {row['case']} | {row['before']:.2f} | {row['after']:.2f} | {row['ratio']:.2f}x |"
        for row in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scrub", description=__doc__)
    parser.add_argument("--against", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing of a text")
    parser.add_argument("--repeat", type=int, default=7, help="timings per case (best is kept)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.number < 4 or args.repeat < 1:
        parser.error("--number must be at least 4 and --repeat at least 1")
    try:
        rows = run(args.against or None, args.number, args.repeat)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"bench_scrub: cannot read the scrubber at {args.against!r}: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows, args.against or None))
    if args.json:
        args.json.write_text(json.dumps({"against": args.against, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
