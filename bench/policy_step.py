"""The policy step's cost per event, for comparing two commits: ``python -m bench.policy_step``.

Two measurements, each under the commit whose ``alertkit`` is imported (run it under each commit,
``PYTHONPATH`` pointing at the other tree, and compare the ratios):

* **per envelope kind**: a few typical log records captured through a real ``AlertHandler`` (the
  envelope as it reaches the processors), then the default processors (scrubber, limits) timed
  over each of them, alone and together. ``trail`` is an error carrying a full 50-crumb trail,
  the same envelope over and over: the cost once its crumbs are known.
* **burst** (``--burst N``, after a short burst that compiles what is made on first use): what
  the policy thread does per error event in a burst of ``N``
  consecutive ``logger.error`` calls after 50 ``logger.info`` calls, each error carrying the
  trail (the previous 49 errors and one crumb new to it): the capture (event built, trail
  attached), the processors, storm control and the fan-out, run by the pipeline's own batch
  step on this thread into a hand-over that does nothing. A fresh client per repeat, so the
  memos start empty as they do in a process. ``--burst-only`` skips the rest, and ``--no-run``
  captures without processing: under ``valgrind --tool=callgrind`` the difference of the two is
  the instructions of the policy step alone, unmoved by the machine's load.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import alertkit
from alertkit import AlertHandler, Client
from alertkit.policy.scrub import default_processors
from alertkit.testing import MemoryBackend

#: Breadcrumbs an error takes by default (``max_breadcrumbs``).
TRAIL = 50


def _logger(name: str, client: Client) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.handlers[:] = [AlertHandler(client=client)]
    return log


def _fill_trail(log: logging.Logger, count: int = TRAIL) -> None:
    """``count`` INFO records, each a crumb (the handler keeps INFO and above as breadcrumbs)."""
    for i in range(count):
        log.info("order %s shipped to %s", i, "customer-42", extra={"order": i, "region": "eu"})


def captured_envelopes() -> dict[str, Any]:
    """One envelope per kind of record, as the first processor sees it."""
    seen: list[Any] = []

    def record(envelope: Any) -> Any:
        seen.append(envelope)
        return envelope

    record.keeps_types = True  # type: ignore[attr-defined]  # older commits read it
    client = Client(
        backends=[MemoryBackend()], processors=[record], sample_system=False, register_atexit=False
    )
    log = _logger("bench.policy_step", client)
    log.error("payment of %s failed", "jill")
    log.error("order %s failed", 7, extra={"order": 1234, "amount": 12.5, "user_id": "u-1"})
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed", extra={"key": "missing", "attempt": 2})
    with client.scope(tags={"request": "r-1"}):
        log.error("in a scope %s", 1, extra={"path": "/pay"})
    _fill_trail(log)
    log.error("order %s failed", 8, extra={"order": 1235, "region": "eu"})
    assert client.flush(5)
    client.shutdown(1)
    envelopes = dict(zip(["plain", "extra", "exception", "scope"], seen, strict=False))
    envelopes["trail"] = seen[-1]
    assert len(envelopes["trail"].breadcrumbs) == TRAIL, "the trail was not attached"
    return envelopes


def per_kind(n: int, repeat: int) -> None:
    processors = default_processors()
    for name, envelope in captured_envelopes().items():
        costs = []
        for processor in [*processors, None]:  # each alone, then the whole step
            chain = processors if processor is None else [processor]
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                for _ in range(n):
                    out = envelope
                    for step in chain:
                        out = step(out)
                best = min(best, time.perf_counter() - start)
            costs.append(f"{best / n * 1e6:6.2f}")
        print(f"{name:10} scrub {costs[0]} limits {costs[1]} both {costs[2]} us per event")


def burst_captures(count: int, trail: int = TRAIL) -> tuple[Client, list[Any]]:
    """A client keeping ``trail`` breadcrumbs, and the captures of ``count`` consecutive errors
    as its policy thread gets them (taken at the client's hand-off: no thread of its runs them)."""
    client = Client(
        backends=[MemoryBackend()],
        sample_system=False,
        register_atexit=False,
        queue_size=count + 16,
        max_breadcrumbs=trail,
    )
    captures: list[Any] = []

    def take(capture: Any, future: Any = None) -> bool:
        captures.append(capture if future is None else (capture, future))
        return True

    client.pipeline.submit = take  # type: ignore[method-assign]
    log = _logger("bench.policy_step.burst", client)
    _fill_trail(log)
    for i in range(count):
        log.error("order %s failed", i, extra={"order": i, "region": "eu"})
    return client, captures


def burst(count: int, repeat: int, trail: int, run: bool = True) -> None:
    """Per error event of a burst, the policy thread's whole step, best of ``repeat``."""
    warm, captures = burst_captures(64, trail)  # first use: patterns and plans compiled
    for at in range(0, len(captures), 16):
        warm.pipeline._process_batch(captures[at : at + 16], lambda worker, batch: None)
    warm.shutdown(1)
    best = float("inf")
    for _ in range(repeat):
        client, captures = burst_captures(count, trail)
        pipeline = client.pipeline
        start = time.perf_counter()
        if run:
            for at in range(0, len(captures), 256):  # the policy thread's batches
                pipeline._process_batch(captures[at : at + 256], lambda worker, batch: None)
        best = min(best, time.perf_counter() - start)
        client.shutdown(1)
    print(
        f"burst      {count} errors, {trail:2}-crumb trail: {best / count * 1e6:6.2f} us per event"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="runs per envelope")
    parser.add_argument("--repeat", type=int, default=5, help="best of")
    parser.add_argument("--burst", type=int, default=2_000, help="errors in the burst")
    parser.add_argument("--burst-only", action="store_true", help="only the burst")
    parser.add_argument("--no-run", action="store_true", help="capture the burst, process none")
    parser.add_argument("--trail", type=int, help="only this max_breadcrumbs (default 50, then 0)")
    args = parser.parse_args()
    print(f"alertkit from {alertkit.__file__}")
    if not args.burst_only:
        per_kind(args.n, args.repeat)
    for trail in [TRAIL, 0] if args.trail is None else [args.trail]:
        burst(args.burst, args.repeat, trail, run=not args.no_run)


if __name__ == "__main__":
    main()
