"""``alertkit spool list | replay | purge``: look into the durable spool and empty it by hand.

``replay`` is for the operator after an outage (the running application replays on its own): it
builds the backends from ``--url`` or ``$ALERTKIT_BACKENDS``, matches spooled rows to them by backend
name, and delivers each batch through the pipeline's own worker and retry policy, bounded by
``--attempts``. Rows it cannot deliver stay in the spool.

A file given with ``--file`` that is missing, a directory or not a spool database is one line on
stderr and exit status 2. These commands never move or repair a file; ``list`` reads what is still
readable from a damaged one (such as a spool the application moved aside).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from alertkit.backends import Backend, ClientContext, create_backend
from alertkit.backends._message import cut
from alertkit.cli.arguments import positive_int, seconds
from alertkit.delivery.worker import BackendWorker, Delivery, Ticket
from alertkit.model.errors import ConfigError
from alertkit.model.outcomes import Delivered, Dropped, Rejected, Result
from alertkit.model.retry import RetryPolicy
from alertkit.spool import files
from alertkit.spool.store import (
    Spool,
    SpoolCorruptError,
    SpooledEvent,
    SpoolError,
    default_spool_path,
    display_row,
)

#: The longest wait the CLI makes before a retry (a server's ``Retry-After`` included).
MAX_WAIT = 60.0
#: What one try may take beside its wait (a send that times out), in the replay's time bound.
_SEND_ALLOWANCE = 30.0


def add_spool_command(subparsers: Any) -> None:
    """Register ``alertkit spool`` and its ``list``, ``replay`` and ``purge`` subcommands."""
    spool = subparsers.add_parser("spool", help="inspect, replay or purge the durable spool")
    actions = spool.add_subparsers(dest="spool_command", metavar="ACTION")
    actions.required = True

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--backend", metavar="NAME", help="only this backend's events")
        parser.add_argument(
            "--file",
            "--path",
            dest="path",
            metavar="FILE",
            help="spool file (default $ALERTKIT_HOME/spool.db)",
        )

    listing = actions.add_parser("list", help="show spooled events in replay order")
    common(listing)
    listing.add_argument("--json", action="store_true", help="print the rows as JSON")
    listing.add_argument("--limit", type=positive_int, default=50, help="how many (default 50)")
    listing.set_defaults(func=_list)

    replay = actions.add_parser("replay", help="deliver spooled events now")
    common(replay)
    replay.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="backend URL (repeatable); default $ALERTKIT_BACKENDS, else the local inbox",
    )
    replay.add_argument(
        "--attempts", type=positive_int, default=3, metavar="N", help="tries per batch (default 3)"
    )
    replay.add_argument(
        "--backoff",
        type=seconds(MAX_WAIT, zero=True),
        default=0.5,
        metavar="SECONDS",
        help="first wait between tries in seconds, doubled each time (default 0.5)",
    )
    replay.add_argument(
        "--batch",
        type=positive_int,
        default=100,
        metavar="N",
        help="events claimed at a time (default 100)",
    )
    replay.add_argument(
        "--progress", action="store_true", help="draw the progress bar even when not on a terminal"
    )
    replay.set_defaults(func=_replay)

    purge = actions.add_parser("purge", help="delete spooled events without sending them")
    common(purge)
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=_purge)


class _BadFile(Exception):
    """The spool file given cannot be used at all (exit status 2, like any usage error)."""


def _spool_errors(
    command: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A file that is not a usable spool is one line on stderr and exit status 2; a spool that
    fails while in use (locked too long, disk full) is one line and exit status 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (_BadFile, SpoolCorruptError) as exc:
            print(f"alertkit: error: {exc}", file=sys.stderr)
            return 2
        except SpoolError as exc:
            print(f"alertkit: error: {exc}", file=sys.stderr)
            return 1

    return run


def _path(args: argparse.Namespace) -> Path:
    return Path(args.path) if args.path else default_spool_path()


def _open(args: argparse.Namespace) -> Spool:
    # A replay can wait out several retries; other replayers must not take its rows meanwhile.
    # recover=False: an operator's command never moves a damaged file aside.
    return Spool(_path(args), lease_seconds=300.0, recover=False)


def _exists(args: argparse.Namespace) -> bool:
    """Whether there is a spool to work on. A default spool that was never written is simply
    empty (and nothing is created); a file named on the command line must be a spool database.

    Raises:
        _BadFile: the path is a directory, is missing (when given), or is not a spool database.
    """
    path = _path(args)
    if path.is_dir():
        raise _BadFile(f"{path} is a directory, not a spool file")
    if not path.exists():
        if args.path:
            raise _BadFile(f"no spool file at {path}")
        return False
    if path.stat().st_size == 0:
        return False  # created, never written: an empty spool
    try:
        conn = files.connect_read_only(path)
    except sqlite3.Error as exc:
        raise _BadFile(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute("SELECT 1 FROM spool LIMIT 0")
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise _BadFile(f"{path} is a SQLite database but not a spool (no spool table)") from exc
        raise _BadFile(f"cannot read {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise SpoolCorruptError(f"{path} is damaged or not a spool database: {exc}") from exc
    finally:
        conn.close()
    return True


# -- list ------------------------------------------------------------------------------------------


@_spool_errors
def _list(args: argparse.Namespace) -> int:
    """Print spooled events, oldest (next to replay) first, and what the bounds evicted."""
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    evicted: dict[str, int] = {}
    try:
        if _exists(args):
            with _open(args) as spool:
                rows = spool.list(args.backend, args.limit)
                counts = spool.counts()
                evicted = spool.evicted()
    except SpoolCorruptError as exc:
        rows, counts, evicted = _salvage(args, exc)
    if args.backend is not None:
        counts = {k: v for k, v in counts.items() if k == args.backend}
        evicted = {k: v for k, v in evicted.items() if k == args.backend}
    if args.json:
        print(json.dumps({"events": rows, "counts": counts, "evicted": evicted}, indent=2))
        return 0
    path = args.path or default_spool_path()
    total = sum(counts.values())
    parts = [f"{name}: {count}" for name, count in sorted(counts.items())]
    print(f"{total} event(s) in {path}" + (f" ({', '.join(parts)})" if parts else ""))
    if any(evicted.values()):
        lost = ", ".join(f"{name}: {count}" for name, count in evicted.items() if count)
        print(f"evicted by the spool's bounds (oldest first): {lost}")
    if not rows:
        return 0
    print(f"{'captured (UTC)':<19}  {'backend':<12}  {'tries':>5}  {'type':<24}  reason / message")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["created"]))
        event = row["event"]
        message = (event.get("eventMessage") or "").splitlines()
        lease = " (being replayed)" if row["leased"] else ""
        print(
            f"{when:<19}  {cut(row['backend'], 12):<12}  {row['attempts']:>5}  "
            f"{cut(event.get('eventType') or '', 24):<24}  {cut(row['reason'], 40)}{lease}"
            f"{' / ' + cut(message[0], 60) if message else ''}"
        )
    if total > len(rows):
        print(f"... and {total - len(rows)} more (--limit)")
    return 0


def _salvage(
    args: argparse.Namespace, error: SpoolCorruptError
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, int]]:
    """What is still readable in a damaged spool, in replay order, with one warning line.

    Raises:
        SpoolCorruptError: nothing at all can be read.
    """
    path = _path(args)
    try:
        raw, evicted, _ = files.salvage(path)
    except sqlite3.Error:
        raise error from None
    now = time.time()
    shown = [display_row(row, now) for row in raw]
    if args.backend is not None:
        shown = [row for row in shown if row["backend"] == args.backend]
    counts: dict[str, int] = {}
    for row in shown:
        counts[row["backend"]] = counts.get(row["backend"], 0) + 1
    shown.sort(key=lambda row: (row["created"], row["id"]))
    print(
        f"alertkit: warning: {path} is damaged; showing the {len(shown)} event(s) still readable",
        file=sys.stderr,
    )
    return shown[: args.limit], counts, evicted


# -- purge -----------------------------------------------------------------------------------------


@_spool_errors
def _purge(args: argparse.Namespace) -> int:
    """Delete spooled events (all, or one backend's) after confirmation."""
    if not _exists(args):
        print("purged 0 event(s): the spool is empty")
        return 0
    with _open(args) as spool:
        counts = spool.counts()
        count = counts.get(args.backend, 0) if args.backend else sum(counts.values())
        if count and not args.yes:
            if not sys.stdin.isatty():
                print(
                    f"alertkit: error: purge would delete {count} event(s); pass --yes",
                    file=sys.stderr,
                )
                return 2
            scope = f" of {args.backend}" if args.backend else ""
            answer = input(f"Delete {count} spooled event(s){scope} from {spool.path}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        deleted = spool.purge(args.backend)
    print(f"purged {deleted} event(s)")
    return 0


# -- replay ----------------------------------------------------------------------------------------


@dataclass
class _Tally:
    replayed: int = 0
    failed: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@_spool_errors
def _replay(args: argparse.Namespace) -> int:
    """Deliver spooled events to the configured backends; 0 when every one was delivered."""
    backends = _backends(args.url)
    try:
        by_name = {backend.name: backend for backend in backends}
        if args.backend is not None and args.backend not in by_name:
            raise ConfigError(
                f"spool replay: no configured backend is named {args.backend!r} "
                f"(configured: {', '.join(by_name)})"
            )
        tally = _Tally()
        if _exists(args):
            with _open(args) as spool:
                counts = spool.counts()
                if args.backend is not None:
                    counts = {args.backend: counts.get(args.backend, 0)}
                show = args.progress or sys.stderr.isatty()
                for name, count in sorted(counts.items()):
                    if name not in by_name:
                        tally.skipped[name] = count
                    elif count:
                        bar = _Progress(name, count, sys.stderr) if show else None
                        _replay_backend(spool, by_name[name], count, args, tally, bar)
    except KeyboardInterrupt:
        print("alertkit: replay interrupted; undelivered events stay in the spool", file=sys.stderr)
        return 130
    finally:
        for backend in backends:
            backend.close()
    summary = f"replayed {tally.replayed}, failed {tally.failed}, rejected {tally.rejected}"
    if tally.skipped:
        names = ", ".join(tally.skipped)
        summary += f", skipped {sum(tally.skipped.values())} (no backend named {names})"
    print(summary)
    return 0 if not (tally.failed or tally.rejected or tally.skipped) else 1


def _backends(urls: Sequence[str] | None) -> list[Backend]:
    if not urls:
        env = os.environ.get("ALERTKIT_BACKENDS", "")
        urls = [u.strip() for u in env.split(",") if u.strip()] or ["local://"]
    context = ClientContext(
        api_key=os.environ.get("ALERTKIT_API_KEY") or None, hostname=socket.gethostname()
    )
    made: list[Backend] = []
    try:
        for url in urls:
            backend = create_backend(url)
            backend.bind(context)
            made.append(backend)
    except BaseException:
        for backend in made:
            backend.close()
        raise
    return made


def _replay_backend(
    spool: Spool,
    backend: Backend,
    count: int,
    args: argparse.Namespace,
    tally: _Tally,
    bar: _Progress | None,
) -> None:
    """Claim ``backend``'s rows batch by batch and deliver them through a
    :class:`~alertkit.delivery.worker.BackendWorker`, the pipeline's own retry loop; stop at the
    first batch that keeps failing (the destination is still down), leaving the rest spooled."""
    size = max(1, min(args.batch, backend.max_batch))
    worker = _Replayer(backend, args, size)
    done = 0
    try:
        while done < count:  # rows spooled meanwhile wait for the next run: this loop is bounded
            batch = spool.claim(backend.name, min(size, count - done))
            if not batch:
                break
            reason = worker.deliver(spool, batch, tally)
            done += len(batch)
            if bar is not None:
                bar.update(done)
            if reason is not None:
                if bar is not None:
                    bar.finish()
                left = spool.counts().get(backend.name, 0)
                tally.failed += left
                print(
                    f"{backend.name}: still failing ({backend.mask(reason)}); "
                    f"{left} event(s) stay in the spool",
                    file=sys.stderr,
                )
                return
    finally:
        worker.close()
        if bar is not None:
            bar.finish()


class _Replayer:
    """One backend's worker, fed with claimed rows instead of fresh events.

    The worker retries as it does in the pipeline (``--attempts`` tries, ``--backoff`` doubled,
    ``Retry-After`` honoured up to :data:`MAX_WAIT`); its results come back here, to the main
    thread, which settles the rows: delivered rows are deleted, rejected rows dropped and reported,
    the rest released with their last reason.
    """

    def __init__(self, backend: Backend, args: argparse.Namespace, size: int) -> None:
        self.name = backend.name
        self.backend = backend
        policy = RetryPolicy(
            max_attempts=args.attempts,
            backoff=args.backoff,
            max_backoff=MAX_WAIT,
            jitter=False,
            deadline=args.attempts * (MAX_WAIT + _SEND_ALLOWANCE),
            max_hint=MAX_WAIT,
            circuit_threshold=0,  # the batch's tries are the whole replay: no circuit to open
        )
        self.budget = policy.deadline + _SEND_ALLOWANCE
        self.results: queue.SimpleQueue[tuple[int, Result]] = queue.SimpleQueue()
        self.worker = BackendWorker(
            backend,
            policy=policy,
            queue_size=size,
            batch_size=size,
            threads=1,
            on_give_up=lambda _backend, _items, reason: Dropped(reason),  # rows are not fresh
        )

    def deliver(self, spool: Spool, batch: list[SpooledEvent], tally: _Tally) -> str | None:
        """Send ``batch`` and settle its rows; the reason they still fail, or None."""
        now = time.time()
        deliveries = [
            Delivery(item.envelope, Ticket(1, self._answered(item.id)), now, spool_id=item.id)
            for item in batch
        ]
        events = {item.id: item.envelope.event_id for item in batch}
        unsettled = set(events)
        failing: list[tuple[int, str]] = []
        try:
            refused = self.worker.put_many(deliveries)
            for delivery in refused:  # not expected (the queue holds a batch); tried next run
                unsettled.discard(cast(int, delivery.spool_id))
                failing.append((cast(int, delivery.spool_id), "replay queue full"))
            until = time.monotonic() + self.budget
            while unsettled:
                row, result = self.results.get(timeout=max(0.01, until - time.monotonic()))
                unsettled.discard(row)
                if isinstance(result, Delivered):
                    spool.ack([row])
                    tally.replayed += 1
                elif isinstance(result, Rejected):
                    spool.drop([row])
                    tally.rejected += 1
                    print(
                        f"{self.name}: event {events[row]} rejected: "
                        f"{self.backend.mask(result.reason)}",
                        file=sys.stderr,
                    )
                else:
                    reason = getattr(result, "reason", "") or "not delivered"
                    failing.append((row, reason.removeprefix("still failing: ")))
        except BaseException:  # Ctrl-C, or no answer in time: what was not settled goes back
            spool.release(sorted(unsettled))
            raise
        for row, reason in failing:
            spool.release([row], reason)
        return failing[-1][1] if failing else None

    def _answered(self, row: int) -> Callable[[Ticket], None]:
        def answered(ticket: Ticket) -> None:  # on the worker's thread: hand over, settle here
            result = (ticket.results or {}).get(self.name, Dropped("no result"))
            self.results.put((row, result))

        return answered

    def close(self) -> None:
        """Stop the worker at once; an unanswered send is cut short by closing the backend."""
        now = time.monotonic()
        self.worker.begin_close(now)
        self.worker.join(now)


class _Progress:
    """A carriage-return progress bar on one line of ``stream`` (stdlib only)."""

    WIDTH = 30

    def __init__(self, name: str, total: int, stream: TextIO) -> None:
        self.name = name
        self.total = total
        self.stream = stream
        self.started = time.monotonic()
        self.shown = False
        self.update(0)

    def update(self, done: int) -> None:
        filled = self.WIDTH * done // self.total if self.total else self.WIDTH
        percent = 100 * done // self.total if self.total else 100
        elapsed = time.monotonic() - self.started
        rate = f"  {done / elapsed:,.0f}/s" if elapsed > 0.5 and done else ""
        self.stream.write(
            f"\r{cut(self.name, 16)} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{done}/{self.total} {percent:3d}%{rate}"
        )
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


# -- argument types --------------------------------------------------------------------------------
