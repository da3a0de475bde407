"""Shutdown's time budget and its accounting, apart from the pipeline's running code.

:meth:`alertkit.delivery.pipeline.Pipeline.shutdown` shares one budget across every backend; the
end of it is a reserve for giving up on what is left (spooling costs time per event). This module
holds that arithmetic and the tally that turns the counts into the one summary line at exit.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence

from alertkit.delivery.announce import exit_summary
from alertkit.delivery.stats import BackendStats

#: The end of the shutdown budget kept for giving up on what is left: a fixed part (closing the
#: backends and the spool) plus, per event still waiting, what spooling (building it first if
#: it is still in the intake) or dropping it costs on a loaded machine.
RESERVE_FIXED = 0.02
SPOOL_COST = 100e-6
DROP_COST = 40e-6
#: How often shutdown looks again at what is waiting while it waits for the threads.
STEP = 0.02


def join_until_reserve(
    threads: Sequence[threading.Thread],
    close_by: float,
    waiting: Callable[[], int],
    per_event: float,
) -> None:
    """Wait for ``threads`` to end, until only the time needed to give up on the ``waiting()``
    events (``per_event`` seconds each) is left of the budget ending at ``close_by``."""
    for thread in threads:
        while thread.is_alive():
            left = close_by - RESERVE_FIXED - waiting() * per_event - time.monotonic()
            if left <= 0:
                return
            thread.join(min(left, STEP))


class ShutdownTally:
    """What one shutdown gave up on, per backend, and the one line that tells the whole run.

    Made when shutdown starts: it hushes the running drop lines (from then on the summary tells
    what was not delivered) and remembers the counts so far.
    """

    def __init__(self, backends: dict[str, BackendStats], intake: BackendStats) -> None:
        self.started = time.monotonic()
        self._backends = backends
        self._intake = intake
        for stats in [intake, *backends.values()]:
            stats.hush()
        self._before = {name: _given_up(stats) for name, stats in backends.items()}

    def finish(self, budget: float) -> dict[str, int]:
        """Print the exit summary (if there is anything to say) to stderr; return the events
        given up (spooled or dropped) during shutdown per backend that gave any up."""
        summary = exit_summary(
            self._backends,
            self._intake,
            budget=budget,
            elapsed=time.monotonic() - self.started,
        )
        if summary is not None:  # one write: clients shut down side by side at exit print at once
            sys.stderr.write(summary + "\n")
        given_up = {
            name: _given_up(stats) - self._before[name] for name, stats in self._backends.items()
        }
        return {name: count for name, count in given_up.items() if count}


def _given_up(stats: BackendStats) -> int:
    counts = stats.snapshot(0)
    return int(counts["spooled"]) + int(counts["dropped"])
