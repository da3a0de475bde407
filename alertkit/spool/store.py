"""The durable spool: events a backend could not take yet, kept in SQLite until it can.

The pipeline spools an event (per backend) when it reaches its deadline, meets an open circuit, or is
still queued when the shutdown budget runs out; it replays spooled events, oldest first, when the
backend recovers and on the next start. The whole :class:`~alertkit.model.event.Envelope` is stored, so a
replay carries the same ``event_id`` and a deduplicating destination sees one event.

One file may be shared by several threads and several processes: SQLite's own locking (WAL mode,
``busy_timeout``, ``BEGIN IMMEDIATE`` for every write) serialises writers, and a *lease* on claimed
rows keeps two replayers from taking the same rows. A claimer also holds a lock that dies with its
process (:mod:`alertkit.spool.files`), so the rows of a process that crashed are claimable again at
once; without that lock, when its lease expires. Delivery is therefore at least once.

A file SQLite cannot read (garbage, truncated, a zeroed header) is moved aside, kept for inspection,
and a fresh spool is started: a disk incident must not take the application down.

The spool is bounded by event count, bytes and age; the oldest rows go first and every eviction is
counted per backend in the file itself, so any process (and ``alertkit spool list``) can report it.
"""

from __future__ import annotations

import builtins
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec

from alertkit.backends.local import alertkit_home
from alertkit.model.errors import AlertkitError, ConfigError
from alertkit.model.event import Envelope, decode_envelope, encode_envelope
from alertkit.spool import files

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_EVENTS",
    "Spool",
    "SpoolCorruptError",
    "SpoolError",
    "SpooledEvent",
    "default_spool_path",
]

log = logging.getLogger("alertkit.spool")

DEFAULT_MAX_EVENTS = 100_000
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_AGE = 7 * 24 * 3600
_CHUNK = 500  # ids per statement: below SQLite's oldest limit of 999 bound variables
_MASK = "****"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    backend TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created REAL NOT NULL,
    spooled_at REAL NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    envelope BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spool_event ON spool (backend, event_id);
CREATE INDEX IF NOT EXISTS spool_order ON spool (backend, created, id);
CREATE INDEX IF NOT EXISTS spool_age ON spool (created, id);
CREATE INDEX IF NOT EXISTS spool_lease ON spool (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS evictions (backend TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS totals (
    one INTEGER PRIMARY KEY CHECK (one = 1), events INTEGER NOT NULL, bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS spool_insert AFTER INSERT ON spool BEGIN
    UPDATE totals SET events = events + 1, bytes = bytes + NEW.size WHERE one = 1;
END;
CREATE TRIGGER IF NOT EXISTS spool_delete AFTER DELETE ON spool BEGIN
    UPDATE totals SET events = events - 1, bytes = bytes - OLD.size WHERE one = 1;
END;
CREATE TRIGGER IF NOT EXISTS spool_resize AFTER UPDATE OF size ON spool BEGIN
    UPDATE totals SET bytes = bytes - OLD.size + NEW.size WHERE one = 1;
END;
PRAGMA user_version = 2;
"""
_SCHEMA_VERSION = 2  # 2 added owners and spool_lease; the script above upgrades a version 1 file


class SpoolError(AlertkitError):
    """The spool could not do what was asked (disk full, file unreadable, closed, too large)."""


class SpoolCorruptError(SpoolError):
    """The file is not a SQLite database, or is damaged (SQLite says it is malformed)."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _again_if_recovered(
    method: Callable[Concatenate[Spool, _P], _R],
) -> Callable[Concatenate[Spool, _P], _R]:
    """Run an operation once more on the fresh file when the damaged one was just moved aside.
    Only for operations that take no row ids: ids from the old file mean nothing in the new one."""

    def run(self: Spool, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except SpoolCorruptError:
            if not self.recover:
                raise
            return method(self, *args, **kwargs)

    functools.update_wrapper(run, method)
    return run


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """One claimed row: ack it when delivered, release it when still failing, drop it when rejected."""

    id: int
    backend: str
    envelope: Envelope
    reason: str
    spooled_at: float
    attempts: int


def default_spool_path() -> Path:
    """``$ALERTKIT_HOME/spool.db``."""
    return alertkit_home() / "spool.db"


_encode = encode_envelope


# Connections inherited through fork() must be neither used nor closed in the child (SQLite's rule):
# closing one could checkpoint or unlock a file the parent is using. They are parked here instead.
_inherited: builtins.list[sqlite3.Connection] = []
_live: weakref.WeakSet[Spool] = weakref.WeakSet()


class Spool:
    """A bounded, multi-process spool of envelopes per backend in one SQLite file.

    Args:
        path: the database file; default ``$ALERTKIT_HOME/spool.db``. Created (mode 0600) if missing.
        max_events: most rows in the file; beyond it the oldest are evicted and counted.
        max_bytes: most bytes of stored envelopes (the file itself is somewhat larger).
        max_age: seconds after capture (``Envelope.created``) after which a row is evicted.
        lease_seconds: how long claimed rows stay invisible to other claimers before they come back
            (unless their claimer's process is found dead first).
        timeout: seconds to wait for another process's write lock (``busy_timeout``).
        clock: the wall clock (tests pass a fake one).
        recover: move a damaged file aside (``<name>.corrupt-<UTC time>``, listed in
            :attr:`quarantined`) and start a fresh one, instead of raising
            :class:`SpoolCorruptError`. Tools that only inspect a file pass False.

    The file is opened on first use, so constructing a spool is cheap and does no I/O beyond
    checking that ``path`` is not a directory.

    Raises:
        ConfigError: a bound is not positive, or ``path`` is a directory (ConfigError is a
            ValueError).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        lease_seconds: float = 60.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        recover: bool = True,
    ) -> None:
        for option, value in (
            ("max_events", max_events),
            ("max_bytes", max_bytes),
            ("max_age", max_age),
            ("lease_seconds", lease_seconds),
            ("timeout", timeout),
        ):
            if value <= 0 and not (option == "lease_seconds" and value == 0):
                raise ConfigError(f"spool: {option} must be positive, got {value!r}")
        self.path = Path(path) if path is not None else default_spool_path()
        if self.path.is_dir():
            raise ConfigError(f"spool: {self.path} is a directory, not a spool file")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.lease_seconds = lease_seconds
        self.timeout = timeout
        self._clock = clock
        self.recover = recover
        #: Damaged files this spool moved aside, oldest first.
        self.quarantined: builtins.list[Path] = []
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._inode: int | None = None
        self._pid = os.getpid()
        self._owner_lock = files.OwnerLock(self.path)
        self._owner: str | None = None  # chosen at the first claim
        self._evicted_at_close: dict[str, int] = {}
        self._closed = False
        self._next_eviction_warning = 0.0
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Spool {str(self.path)!r}>"

    # -- connection ------------------------------------------------------------------------------

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        if self._conn is not None:
            _inherited.append(self._conn)
            self._conn = None
        self._pid = os.getpid()
        self._owner_lock.forget()
        self._owner = None

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")
        if self._pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C code)
            self._after_fork()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        conn = sqlite3.connect(
            str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            deadline = time.monotonic() + self.timeout
            while True:  # switching to WAL needs a moment alone with the file
                try:
                    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            # WAL + NORMAL: a killed process loses nothing; a power cut may lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")  # idempotent
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; every failure becomes :class:`SpoolError`."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise self._failure(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection()
            except (sqlite3.Error, OSError) as exc:
                raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> SpoolError:
        """The error to raise for ``exc``; a damaged file is moved aside first (when recovering),
        so that the next operation starts a fresh spool."""
        if not files.is_corrupt(exc):
            return SpoolError(f"spool {self.path}: {exc}")
        if self.recover:
            self._quarantine(exc)
        return SpoolCorruptError(f"spool {self.path} is damaged or not a spool database: {exc}")

    def _quarantine(self, exc: BaseException) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()
        try:
            moved = files.quarantine(self.path, self._inode)
        except OSError as error:
            log.warning(
                "spool %s is damaged (%s) and cannot be moved aside: %s", self.path, exc, error
            )
            return
        if moved is None:
            return  # another process moved it aside already: the next open starts afresh
        self.quarantined.append(moved)
        self._owner_lock.release()  # ids and leases of the old file mean nothing in the new one
        self._owner = None
        log.warning(
            "spool %s is damaged (%s): moved it aside to %s and started a fresh spool; "
            "'alertkit spool list --file %s' shows what it still holds",
            self.path,
            exc,
            moved,
            moved,
        )

    def close(self) -> None:
        """Close the connection; idempotent. Rows this spool still holds leased become claimable
        at once. Later calls raise :class:`SpoolError`, except :meth:`evicted`, which returns
        the counts as they were at close."""
        with self._lock:
            if self._closed:
                return
            conn = self._conn
            if conn is not None and self._pid == os.getpid():
                with suppress(sqlite3.Error, SpoolError):
                    self._evicted_at_close = self.evicted()
                    if self._owner is not None:
                        with self._write() as writing:
                            self._give_back(writing, self._owner)
            self._closed = True
            self._conn = None
            if self._pid == os.getpid():
                self._owner_lock.release()
            else:  # forked without the at-fork hook: the lock file is the parent's
                self._owner_lock.forget()
            if conn is not None:
                if self._pid == os.getpid():
                    conn.close()
                else:
                    _inherited.append(conn)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def put(self, backend: str, envelope: Envelope, reason: str) -> None:
        """Store ``envelope`` for ``backend``, then enforce the bounds (oldest evicted first).

        Spooling the same event id for the same backend again updates its row (keeping its place).
        An event the bounds evict at once (captured more than ``max_age`` ago) is counted in
        :meth:`evicted` like any other eviction.

        Raises:
            SpoolError: the event was not stored (disk full, locked too long, larger than max_bytes).
        """
        self.put_many(backend, [envelope], reason)

    @_again_if_recovered
    def put_many(self, backend: str, envelopes: Iterable[Envelope], reason: str) -> int:
        """Store several envelopes in one transaction (shutdown spools many at once).

        An envelope that cannot be encoded or is larger than ``max_bytes`` on its own is left out
        (and logged); the others are stored.

        Returns:
            How many of them are in the spool afterwards (the bounds may evict some at once).

        Raises:
            SpoolError: nothing was stored (the file could not be written, or every envelope was
                left out).
        """
        rows = []
        refused: builtins.list[str] = []
        for envelope in envelopes:
            try:
                blob = _encode(envelope)
            except Exception as exc:
                refused.append(f"cannot encode event {envelope.event_id}: {exc}")
                continue
            if len(blob) > self.max_bytes:
                refused.append(
                    f"event {envelope.event_id} is {len(blob)} bytes, "
                    f"more than max_bytes={self.max_bytes}"
                )
                continue
            rows.append((envelope.event_id, envelope.created, blob))
        if refused:
            if not rows:
                raise SpoolError(f"spool: {'; '.join(refused[:3])}")
            log.warning("spool: left out %d event(s): %s", len(refused), refused[0])
        if not rows:
            return 0
        now = self._clock()
        with self._write() as conn:
            ids = []
            for event_id, created, blob in rows:
                found = conn.execute(
                    "SELECT id FROM spool WHERE backend = ? AND event_id = ?", (backend, event_id)
                ).fetchone()
                if found:
                    conn.execute(
                        "UPDATE spool SET envelope = ?, size = ?, reason = ?, spooled_at = ?, "
                        "lease_until = 0, lease_owner = NULL WHERE id = ?",
                        (blob, len(blob), reason, now, found[0]),
                    )
                    ids.append(found[0])
                else:
                    cursor = conn.execute(
                        "INSERT INTO spool (backend, event_id, created, spooled_at, reason, size, "
                        "envelope) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (backend, event_id, created, now, reason, len(blob), blob),
                    )
                    ids.append(int(cursor.lastrowid or 0))
            self._enforce_bounds(conn, now)
            kept = 0
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                kept += conn.execute(
                    f"SELECT COUNT(*) FROM spool WHERE id IN ({marks})", chunk
                ).fetchone()[0]
        return int(kept)

    def _enforce_bounds(self, conn: sqlite3.Connection, now: float) -> None:
        evicted: Counter[str] = Counter()
        cutoff = now - self.max_age
        (oldest_created,) = conn.execute("SELECT MIN(created) FROM spool").fetchone()
        if oldest_created is not None and oldest_created < cutoff:  # the cheap test, every put
            for backend, count in conn.execute(
                "SELECT backend, COUNT(*) FROM spool WHERE created < ? GROUP BY backend", (cutoff,)
            ).fetchall():
                evicted[backend] += count
            conn.execute("DELETE FROM spool WHERE created < ?", (cutoff,))
        events, nbytes = conn.execute("SELECT events, bytes FROM totals WHERE one = 1").fetchone()
        while events > self.max_events or nbytes > self.max_bytes:
            # Usually one row over the bound: read only about as many rows as must go.
            want = max(events - self.max_events, 8)
            oldest = conn.execute(
                "SELECT id, backend, size FROM spool ORDER BY created, id LIMIT ?",
                (min(want, _CHUNK),),
            ).fetchall()
            if not oldest:
                break
            doomed = []
            for row_id, backend, size in oldest:
                if events <= self.max_events and nbytes <= self.max_bytes:
                    break
                doomed.append(row_id)
                evicted[backend] += 1
                events -= 1
                nbytes -= size
            self._delete(conn, doomed)
        for backend, count in evicted.items():
            conn.execute("INSERT OR IGNORE INTO evictions VALUES (?, 0)", (backend,))
            conn.execute(
                "UPDATE evictions SET count = count + ? WHERE backend = ?", (count, backend)
            )
        if evicted:
            # A spool at its bound evicts on every put: say so once a minute, not once an event.
            quiet = time.monotonic() < self._next_eviction_warning
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "spool %s is at its bounds: evicted the oldest %s",
                self.path,
                ", ".join(f"{count} of {backend}" for backend, count in sorted(evicted.items())),
            )
            if not quiet:
                self._next_eviction_warning = time.monotonic() + 60.0

    @staticmethod
    def _delete(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
        deleted = 0
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            deleted += conn.execute(f"DELETE FROM spool WHERE id IN ({marks})", chunk).rowcount
        return deleted

    # -- replaying -------------------------------------------------------------------------------

    @_again_if_recovered
    def claim(self, backend: str, limit: int) -> builtins.list[SpooledEvent]:
        """Lease up to ``limit`` of ``backend``'s rows, oldest capture first, for ``lease_seconds``.

        Rows leased by another claimer are skipped until their lease expires or that claimer's
        process is found dead. A row that can no longer be decoded is evicted (and counted) rather
        than blocking the ones behind it.
        """
        if limit < 1:
            return []
        now = self._clock()
        claimed: builtins.list[SpooledEvent] = []
        with self._write() as conn:
            owner = self._lease_owner(conn)
            self._take_back_from_the_dead(conn)
            self._enforce_bounds(conn, now)
            rows = conn.execute(
                "SELECT id, envelope, reason, spooled_at, attempts, event_id FROM spool "
                "WHERE backend = ? AND lease_until <= ? ORDER BY created, id LIMIT ?",
                (backend, now, limit),
            ).fetchall()
            broken = []
            for row_id, blob, reason, spooled_at, attempts, event_id in rows:
                try:
                    envelope = decode_envelope(blob)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("spool: evicting unreadable event %s: %s", event_id, exc)
                    broken.append(row_id)
                    continue
                claimed.append(
                    SpooledEvent(row_id, backend, envelope, reason, spooled_at, attempts)
                )
            if broken:
                self._delete(conn, broken)
                conn.execute("INSERT OR IGNORE INTO evictions VALUES (?, 0)", (backend,))
                conn.execute(
                    "UPDATE evictions SET count = count + ? WHERE backend = ?",
                    (len(broken), backend),
                )
            for chunk in _chunks([item.id for item in claimed]):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"UPDATE spool SET lease_until = ?, lease_owner = ? WHERE id IN ({marks})",
                    (now + self.lease_seconds, owner, *chunk),
                )
        return claimed

    def _lease_owner(self, conn: sqlite3.Connection) -> str:
        """Who this spool's leases belong to; the first claim takes the owner lock and registers
        a locked owner, so that others can check whether it still lives."""
        if self._owner is None:
            self._owner = self._owner_lock.acquire()
        if self._owner.startswith(files.LOCKED):  # every time: a first claim may have rolled back
            conn.execute("INSERT OR IGNORE INTO owners VALUES (?)", (self._owner,))
        return self._owner

    def _dead_owners(self, conn: sqlite3.Connection) -> builtins.list[str]:
        """Registered owners other than this one whose process is gone (a few file locks)."""
        owners = [row[0] for row in conn.execute("SELECT owner FROM owners").fetchall()]
        return [
            owner
            for owner in owners
            if owner != self._owner and files.owner_is_dead(self.path, owner)
        ]

    def _take_back_from_the_dead(self, conn: sqlite3.Connection) -> int:
        taken = 0
        for owner in self._dead_owners(conn):
            taken += self._give_back(conn, owner)
        if taken:
            log.info(
                "spool %s: took back %d event(s) leased by a process that is gone", self.path, taken
            )
        return taken

    @staticmethod
    def _give_back(conn: sqlite3.Connection, owner: str) -> int:
        """End every lease of ``owner`` and forget it (it closed, or died)."""
        conn.execute("DELETE FROM owners WHERE owner = ?", (owner,))
        return int(
            conn.execute(
                "UPDATE spool SET lease_until = 0, lease_owner = NULL WHERE lease_owner = ?",
                (owner,),
            ).rowcount
        )

    def ack(self, ids: Iterable[int]) -> int:
        """Delete delivered rows this spool holds leased; returns how many it still held (a row
        whose lease another claimer took over since is left to that claimer)."""
        if self._owner is None:
            return 0  # nothing was claimed (or the file was replaced since)
        deleted = 0
        with self._write() as conn:
            for chunk in _chunks(builtins.list(ids)):
                marks = ",".join("?" * len(chunk))
                deleted += conn.execute(
                    f"DELETE FROM spool WHERE lease_owner = ? AND id IN ({marks})",
                    (self._owner, *chunk),
                ).rowcount
        return deleted

    def drop(self, ids: Iterable[int]) -> int:
        """Delete rows given up for good (rejected by the destination); returns how many."""
        return self.ack(ids)

    def release(self, ids: Iterable[int], reason: str | None = None, *, delay: float = 0.0) -> int:
        """Give back rows this spool claimed and could not deliver: their attempts go up by one and
        they become claimable again after ``delay`` seconds. Rows whose lease expired and that
        another claimer took since are left alone. Returns how many rows were released."""
        released = 0
        until = self._clock() + delay if delay > 0 else 0.0
        if self._owner is None:
            return 0
        with self._write() as conn:
            for chunk in _chunks(builtins.list(ids)):
                marks = ",".join("?" * len(chunk))
                released += conn.execute(
                    "UPDATE spool SET lease_until = ?, lease_owner = NULL, attempts = attempts + 1, "
                    f"reason = COALESCE(?, reason) WHERE lease_owner = ? AND id IN ({marks})",
                    (until, reason, self._owner, *chunk),
                ).rowcount
        return released

    # -- inspection ------------------------------------------------------------------------------

    @_again_if_recovered
    def counts(self) -> dict[str, int]:
        """Rows per backend."""
        with self._read() as conn:
            rows = conn.execute("SELECT backend, COUNT(*) FROM spool GROUP BY backend").fetchall()
        return {backend: int(count) for backend, count in rows}

    @_again_if_recovered
    def pending(self, backend: str) -> bool:
        """Whether ``backend`` has a row that :meth:`claim` would return now (an index lookup,
        cheaper than :meth:`counts` on a large spool). When there is none, the rows of claimers
        found dead are taken back first, so a new process sees them at once."""
        query = "SELECT 1 FROM spool WHERE backend = ? AND lease_until <= ? LIMIT 1"
        with self._read() as conn:
            if conn.execute(query, (backend, self._clock())).fetchone() is not None:
                return True
            dead = self._dead_owners(conn)  # a few file locks: only when the answer depends on it
        if not dead:
            return False
        with self._write() as conn:
            self._take_back_from_the_dead(conn)
            return conn.execute(query, (backend, self._clock())).fetchone() is not None

    @_again_if_recovered
    def evicted(self) -> dict[str, int]:
        """Rows evicted by the bounds since the file was created, per backend; after
        :meth:`close`, the counts as they were then."""
        if self._closed:
            return dict(self._evicted_at_close)
        with self._read() as conn:
            rows = conn.execute("SELECT backend, count FROM evictions ORDER BY backend").fetchall()
        return {backend: int(count) for backend, count in rows}

    @_again_if_recovered
    def size(self) -> tuple[int, int]:
        """``(events, bytes)`` stored in the whole file, as the bounds count them."""
        with self._read() as conn:
            events, nbytes = conn.execute("SELECT events, bytes FROM totals").fetchone()
        return int(events), int(nbytes)

    @_again_if_recovered
    def list(self, backend: str | None = None, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """Up to ``limit`` rows in replay order, for display; the event's ``apiKey`` is masked."""
        where, params = ("WHERE backend = ?", [backend]) if backend is not None else ("", [])
        now = self._clock()
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {files.ROW_COLUMNS} FROM spool {where} ORDER BY created, id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [display_row(row, now) for row in rows]

    @_again_if_recovered
    def purge(self, backend: str | None = None) -> int:
        """Delete every row (or ``backend``'s rows); returns how many. Eviction counts stay."""
        with self._write() as conn:
            if backend is None:
                return int(conn.execute("DELETE FROM spool").rowcount)
            return int(conn.execute("DELETE FROM spool WHERE backend = ?", (backend,)).rowcount)


def display_row(row: Sequence[Any], now: float) -> dict[str, Any]:
    """One row (``ROW_COLUMNS``) as :meth:`Spool.list` shows it, the event's ``apiKey`` masked."""
    row_id, name, event_id, created, spooled_at, reason, attempts, size, until, blob = row
    try:
        event = msgspec.json.decode(blob).get("event") or {}
    except (msgspec.DecodeError, AttributeError, TypeError):
        event = {}
    if not isinstance(event, dict):
        event = {}
    if event.get("apiKey"):
        event["apiKey"] = _MASK
    return {
        "id": row_id,
        "backend": name,
        "event_id": event_id,
        "created": created,
        "spooled_at": spooled_at,
        "reason": reason,
        "attempts": attempts,
        "size": size,
        "leased": until > now,
        "event": event,
    }


def _chunks(ids: Sequence[int]) -> Iterator[builtins.list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield builtins.list(ids[start : start + _CHUNK])


def _after_fork_in_child() -> None:
    for spool in builtins.list(_live):
        spool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
