"""The local inbox: every event as a row in a SQLite file. The default when nothing is configured.

One row per event with its wire JSON, time, level and type, so ``alertkit events`` can list what an
application sent without any account anywhere. WAL mode lets the CLI read while the app writes.
Beside the wire JSON a row keeps the event's details, all its breadcrumbs (JSON, oldest first) and
the fingerprint the application chose (a JSON list).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote

import msgspec

from alertkit.backends._options import read_options
from alertkit.backends.base import BaseBackend
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope, encode_event
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    time_ms INTEGER NOT NULL,
    level TEXT,
    event_type TEXT NOT NULL,
    classification TEXT,
    message TEXT,
    logger TEXT,
    json TEXT NOT NULL,
    details TEXT,
    breadcrumbs TEXT,
    fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ms);
"""
_ENCODER = msgspec.json.Encoder()
#: Columns added since the first inbox format, added to an older file when it is opened.
_ADDED_COLUMNS = {"breadcrumbs": "TEXT", "fingerprint": "TEXT"}


#: SQLite primary result codes that no retry can cure: the inbox cannot be written at all.
_SQLITE_PERMANENT = {
    3: "permission denied",  # SQLITE_PERM
    8: "read-only",  # SQLITE_READONLY (file, directory or file system)
    14: "cannot open the database file",  # SQLITE_CANTOPEN
    23: "not authorized",  # SQLITE_AUTH
    26: "not a database",  # SQLITE_NOTADB
}
_SQLITE_FULL = 13
#: The same by message, for Python 3.10 (no ``sqlite_errorcode``).
_SQLITE_MESSAGES = {
    "readonly": 8,
    "unable to open database file": 14,
    "file is not a database": 26,
    "disk is full": _SQLITE_FULL,
}
_OS_PERMANENT = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EEXIST: "a parent is a file, not a directory",
    errno.EISDIR: "is a directory",
}


def alertkit_home() -> Path:
    """``$ALERTKIT_HOME``, default ``~/.alertkit``."""
    return Path(os.environ.get("ALERTKIT_HOME") or Path.home() / ".alertkit")


def default_inbox_path() -> Path:
    return alertkit_home() / "events.db"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) an inbox database in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in have:
            conn.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
    return conn


class LocalBackend(BaseBackend):
    """Stores events in a local SQLite inbox (``local:///path/events.db``; default
    ``$ALERTKIT_HOME/events.db``)."""

    scheme = "local"
    max_batch = 500
    max_concurrency = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        min_level: str | int | None = None,
    ) -> None:
        super().__init__(name=name, min_level=min_level)
        self.path = Path(path) if path else default_inbox_path()
        try:
            is_dir = self.path.is_dir()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte ...
            raise ConfigError(f"local: unusable path {str(self.path)[:200]!r}: {exc}") from None
        if is_dir:
            raise ConfigError(f"local: {self.path} is a directory, not a database file")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        given = read_options("local", query, text=("path",))
        path = given.get("path") or unquote(parts.netloc + parts.path)
        return {"path": path or None}

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._conn = connect(self.path)
        return self._conn

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        rows = []
        for envelope in batch:
            event = envelope.event
            rows.append(
                (
                    envelope.event_id,
                    event.event_time or int(envelope.created * 1000),
                    event.log_level,
                    event.event_type,
                    event.classification,
                    event.event_message,
                    envelope.logger_name,
                    encode_event(event).decode(),
                    _json(envelope.details),
                    _json(envelope.breadcrumbs),
                    _json(envelope.fingerprint),
                )
            )
        try:
            with self._lock:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR IGNORE INTO events (event_id, time_ms, level, event_type, "
                        "classification, message, logger, json, details, breadcrumbs, "
                        "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite ends it itself on some errors (disk full)
                        conn.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError) as exc:
            return [self._failure(exc)] * len(batch)
        return [Delivered({"path": str(self.path)})] * len(batch)

    def _failure(self, exc: sqlite3.Error | OSError) -> Outcome:
        """What a failed write means: an inbox that cannot be written (no permission, a read-only
        file system) is rejected at once, since retrying for the deadline would change nothing;
        a full disk or a locked database may clear up and is retried."""
        if isinstance(exc, OSError):
            what = _OS_PERMANENT.get(exc.errno or 0)
            if what is not None:
                return Rejected(f"cannot write the inbox {self.path}: {what}")
            if exc.errno == errno.ENOSPC:
                return RetryLater(f"cannot write the inbox {self.path}: disk full")
            return RetryLater(f"cannot write the inbox {self.path}: {exc.strerror or exc}")
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            text = str(exc).lower()
            code = next((c for m, c in _SQLITE_MESSAGES.items() if m in text), 1)
        code &= 0xFF  # the primary code of an extended one
        if code in _SQLITE_PERMANENT:
            self._close()  # open afresh next time: the cause may have been fixed
            return Rejected(
                f"cannot write the inbox {self.path}: {_SQLITE_PERMANENT[code]} ({exc})"
            )
        if code == _SQLITE_FULL:
            return RetryLater(f"cannot write the inbox {self.path}: disk full ({exc})")
        return RetryLater(f"sqlite: {exc}")

    def describe(self) -> str:
        return f"local://{self.path}"

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _json(value: Any) -> str | None:
    """``value`` as JSON text, or None when it is empty."""
    return _ENCODER.encode(value).decode() if value else None


def read_events(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` events of an inbox, newest first (for the CLI and tests).

    Each row: ``event_id``, ``time_ms``, ``level``, ``event_type``, ``classification``,
    ``message``, ``logger``, ``event`` (the wire JSON, parsed), ``details``, ``breadcrumbs`` (a
    list, oldest first) and ``fingerprint`` (a list, or None); an inbox written before the last
    two existed reads them as empty.
    """
    import json

    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        added = ", ".join(c if c in have else f"NULL AS {c}" for c in _ADDED_COLUMNS)
        cursor = conn.execute(
            "SELECT event_id, time_ms, level, event_type, classification, message, logger, json, "
            f"details, {added} FROM events ORDER BY time_ms DESC, id DESC LIMIT ?",
            (limit,),
        )
        columns = [c[0] for c in cursor.description]
        result = []
        for row in cursor.fetchall():
            item = dict(zip(columns, row, strict=True))
            item["event"] = json.loads(item.pop("json"))
            item["details"] = json.loads(item["details"]) if item["details"] else {}
            item["breadcrumbs"] = json.loads(item["breadcrumbs"]) if item["breadcrumbs"] else []
            item["fingerprint"] = json.loads(item["fingerprint"]) if item["fingerprint"] else None
            result.append(item)
        return result
    finally:
        conn.close()
