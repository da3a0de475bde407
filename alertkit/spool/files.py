"""The spool's files beside the database: who holds leases, and what to do with a damaged file.

**Owner locks.** A lease alone makes a crashed process's rows wait until the lease runs out. So a
claimer also holds an exclusive ``flock`` on a file of its own, ``<spool>-owners/<owner>.lock``;
the kernel drops that lock when the process dies, however it dies (SIGKILL included). A claimer
that can take another owner's lock knows that owner is gone and takes its rows back at once.
Without ``fcntl`` (Windows), or when the directory cannot be written, an owner has no lock file and
its leases simply run out.

**Damaged files.** A spool that SQLite cannot read (garbage, a truncated file, a zeroed header) is
moved aside under a timestamped name, kept for inspection, and :func:`salvage` reads from it what is
still readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

_fcntl: ModuleType | None
try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None

log = logging.getLogger("alertkit.spool")

#: Lease owners holding a lock file are tagged with this, so a crashed one can be recognised.
LOCKED = "flock:"
_NAME = re.compile(r"[0-9]+-[0-9a-f]{12}\Z")  # what a lock file may be named (never a path)
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_CORRUPT_TEXT = ("file is not a database", "malformed", "file is encrypted")

ROW_COLUMNS = (
    "id, backend, event_id, created, spooled_at, reason, attempts, size, lease_until, envelope"
)


def new_owner_name() -> str:
    return f"{os.getpid()}-{os.urandom(6).hex()}"


def owners_dir(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + "-owners")


class OwnerLock:
    """This spool's lock file: held (``flock``) from its first claim until close or death."""

    def __init__(self, spool_path: Path) -> None:
        self.directory = owners_dir(spool_path)
        self.name = new_owner_name()
        self._fd: int | None = None

    def acquire(self) -> str:
        """Take the lock; returns the lease owner to write into claimed rows: tagged when the lock
        is held, plain (leases only) when it cannot be."""
        if self._fd is not None:
            return LOCKED + self.name
        if _fcntl is None:
            return self.name
        temporary = self.directory / f"{self.name}.tmp"
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                # Renamed only once locked: a lock file by its final name is never unlocked while
                # its owner lives, so a checker cannot mistake a starting owner for a dead one.
                os.replace(temporary, self.directory / f"{self.name}.lock")
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            log.info("spool: no owner lock in %s (%s); leases alone protect claims", self, exc)
            return self.name
        self._fd = fd
        return LOCKED + self.name

    def release(self) -> None:
        """Give the lock up (at close): delete the file, then close it (which unlocks). A later
        :meth:`acquire` takes a new one under a new name."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / f"{self.name}.lock")
            os.close(fd)
        self.name = new_owner_name()

    def forget(self) -> None:
        """In a forked child: drop the inherited descriptor (the parent's lock stays held, since the
        parent still has its own) and become a new owner."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.name = new_owner_name()

    def __str__(self) -> str:
        return str(self.directory)


def owner_is_dead(spool_path: Path, owner: str) -> bool:
    """Whether a tagged lease owner is gone: its lock file is missing or can be locked by us.
    Untagged owners (no lock file) and owners we cannot check count as alive."""
    if _fcntl is None or not owner.startswith(LOCKED):
        return False
    name = owner[len(LOCKED) :]
    if not _NAME.match(name):
        return False
    path = owners_dir(spool_path) / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # closed cleanly, or already found dead by another process
    except OSError:
        return False
    try:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except OSError:
            return False  # held: the owner lives
        with contextlib.suppress(OSError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)


# -- damaged files ----------------------------------------------------------------------------------


def is_corrupt(exc: BaseException) -> bool:
    """Whether SQLite says the file itself is bad (not busy, not full, not missing)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return int(code) & 0xFF in _CORRUPT_CODES
    return any(text in str(exc) for text in _CORRUPT_TEXT)


def quarantine(path: Path, inode: int | None) -> Path | None:
    """Move a damaged spool (and its WAL) aside to ``<name>.corrupt-<UTC time>``; returns the new
    path, or None when ``path`` is no longer the file with ``inode`` (another process moved it
    aside first: several workers of one application may meet the damage at the same moment).
    The shared-memory index is rebuilt by SQLite, so it is deleted rather than kept."""
    with _exclusive(owners_dir(path) / "quarantine.lock"):
        try:
            if inode is not None and os.stat(path).st_ino != inode:
                return None
        except FileNotFoundError:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        os.replace(path, target)
        for suffix in ("-wal", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}-shm")
        return target


@contextlib.contextmanager
def _exclusive(lock_path: Path, timeout: float = 5.0) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (bounded wait); without fcntl, or when the lock
    cannot be had, go on without it (the inode check still catches most races)."""
    fd: int | None = None
    if _fcntl is not None:
        with contextlib.suppress(OSError):
            lock_path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` without writing to it (nor creating it)."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False)


def salvage(path: Path) -> tuple[list[tuple[Any, ...]], dict[str, int], bool]:
    """Read what is still readable from a (possibly damaged) spool file, never writing to it.

    Returns ``(rows, evicted, damaged)``: the readable rows (``ROW_COLUMNS``, by id), the
    eviction counts if readable, and whether some part of the table could not be read.

    Raises:
        sqlite3.DatabaseError: nothing at all can be read (not a database, no spool table).
    """
    conn = connect_read_only(path)
    try:
        with contextlib.suppress(sqlite3.DatabaseError):
            # Read the schema even if one of its objects points past the end of a truncated file.
            conn.execute("PRAGMA writable_schema = ON")
        conn.execute("SELECT 1 FROM spool LIMIT 0")  # not a database / not a spool: raise
        top = _highest_id(conn)
        rows: list[tuple[Any, ...]] = []
        damaged = False
        last = 0
        while True:
            try:
                for row in conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM spool WHERE id > ? ORDER BY id", (last,)
                ):
                    if not _well_formed(row, last):
                        damaged = True  # a stale page the damaged tree points to
                        continue
                    rows.append(row)
                    last = row[0]
                break
            except sqlite3.DatabaseError:
                damaged = True
                if top is None or last >= top:
                    break
                last += 1  # step over the row the damage hides and try the rest
        evicted: dict[str, int] = {}
        with contextlib.suppress(sqlite3.DatabaseError):
            evicted = {b: int(c) for b, c in conn.execute("SELECT backend, count FROM evictions")}
        return rows, evicted, damaged
    finally:
        conn.close()


def _well_formed(row: tuple[Any, ...], last: int) -> bool:
    row_id, backend, event_id, created = row[:4]
    return (
        isinstance(row_id, int)
        and row_id > last
        and isinstance(backend, str)
        and isinstance(event_id, str)
        and isinstance(created, int | float)
        and isinstance(row[-1], bytes)
    )


def _highest_id(conn: sqlite3.Connection) -> int | None:
    for query in (
        "SELECT seq FROM sqlite_sequence WHERE name = 'spool'",
        "SELECT MAX(id) FROM spool",
    ):
        with contextlib.suppress(sqlite3.DatabaseError):
            row = conn.execute(query).fetchone()
            if row and row[0] is not None:
                return int(row[0])
    return None
