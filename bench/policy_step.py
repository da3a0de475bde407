"""The policy step's cost per event, for comparing two commits: ``python -m bench.policy_step``.

Captures a few typical log records through a real ``AlertHandler`` (the envelope as it reaches
the processors), then times the default processors (scrubber, limits) over each of them. Run it
under each commit (``PYTHONPATH`` pointing at the other tree) and compare the ratios.
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
    log = logging.getLogger("bench.policy_step")
    log.propagate = False
    log.addHandler(AlertHandler(client=client))
    log.error("payment of %s failed", "jill")
    log.error("order %s failed", 7, extra={"order": 1234, "amount": 12.5, "user_id": "u-1"})
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed", extra={"key": "missing", "attempt": 2})
    with client.scope(tags={"request": "r-1"}):
        log.error("in a scope %s", 1, extra={"path": "/pay"})
    assert client.flush(5)
    client.shutdown(1)
    return dict(zip(["plain", "extra", "exception", "scope"], seen, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="runs per envelope")
    parser.add_argument("--repeat", type=int, default=5, help="best of")
    args = parser.parse_args()
    processors = default_processors()
    print(f"alertkit from {alertkit.__file__}")
    for name, envelope in captured_envelopes().items():
        costs = []
        for processor in [*processors, None]:  # each alone, then the whole step
            chain = processors if processor is None else [processor]
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                for _ in range(args.n):
                    out = envelope
                    for step in chain:
                        out = step(out)
                best = min(best, time.perf_counter() - start)
            costs.append(f"{best / args.n * 1e6:6.2f}")
        print(f"{name:10} scrub {costs[0]} limits {costs[1]} both {costs[2]} us per event")


if __name__ == "__main__":
    main()
