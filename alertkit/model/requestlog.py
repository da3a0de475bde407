"""The per-request log of a scope, in Escalite's shape (WIRE.md section 4), minus its level bug.

::

    {"alert_id": "<uuid4>", "api_logs": {...}, "service_logs": {...}, "error_logs": {...},
     "log_level": "error", "start_time": 1767225600.0, "end_time": ..., "time_elapsed": 0.25,
     "log_date": "2026-01-01T00:00:00+00:00"}

Each section maps a key to an entry ``{value, code, message, log_level, log_time, extras}``;
service calls add ``url, start_time, end_time, time_elapsed, error_trace``. Unlike Escalite, the
request's ``log_level`` is the highest level ever recorded in any section: a later, lower entry
never lowers it. Tracebacks are kept as objects and rendered only when the log is read or
escalated, so recording an error costs the request a dict insert, not a traceback format.

:class:`RequestLog` is not thread-safe by itself; :class:`alertkit.capture.scope.Scope` holds the lock.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any

from alertkit.model.event import InnerStackTrace
from alertkit.model.levels import LEVEL_NUMBERS
from alertkit.model.stacktrace import (
    format_exception_text,
    render_stacktrace,
    resolve_exc_info,
    safe_str,
)
from alertkit.model.values import to_json_safe

API_LOGS = "api_logs"
SERVICE_LOGS = "service_logs"
ERROR_LOGS = "error_logs"
SECTIONS: tuple[str, ...] = (API_LOGS, SERVICE_LOGS, ERROR_LOGS)

#: Top-level keys of the log; ``add_to_log(key, tag=None)`` may not overwrite them.
RESERVED: frozenset[str] = frozenset(
    {"alert_id", *SECTIONS, "log_level", "start_time", "end_time", "time_elapsed", "log_date"}
)

#: Errors recorded automatically (logged errors, unhandled exceptions) per request; a loop that
#: logs thousands of errors in one request must not grow the log without bound.
MAX_RECORDED_ERRORS = 50

#: What may stand for a traceback until it is rendered: an exception, an exc_info tuple, a wire
#: stack trace (``list[InnerStackTrace]``), or text.
Trace = Any


def render_trace(trace: Trace) -> str | None:
    """The text of a deferred traceback; None when there is nothing to show."""
    if trace is None:
        return None
    if isinstance(trace, str):
        return trace
    if isinstance(trace, list):
        stack = [item for item in trace if isinstance(item, InnerStackTrace)]
        return render_stacktrace(stack) or None
    info = resolve_exc_info(trace)
    return format_exception_text(info) if info is not None else None


def new_alert_id() -> str:
    """A random (version 4) UUID as text, like ``str(uuid.uuid4())`` at a fifth of the cost: one
    is made per request. ``random`` is reseeded in forked children; the id needs uniqueness, not
    secrecy."""
    h = "%032x" % random.getrandbits(128)  # noqa: UP031 (cheaper than an f-string)
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


class RequestLog:
    """One request's log: sections of entries, the highest level seen, times, deferred traces."""

    def __init__(self) -> None:
        self.alert_id = new_alert_id()
        self.level = "info"
        self.start_time = time.time()
        self._start_clock = time.monotonic()
        self.end_time: float | None = None
        self.time_elapsed: float | None = None
        self.sections: dict[str, dict[str, dict[str, Any]]] = {
            API_LOGS: {},
            SERVICE_LOGS: {},
            ERROR_LOGS: {},
        }
        self.top: dict[str, dict[str, Any]] = {}
        self.traces: dict[tuple[str, str], Trace] = {}
        self.escalated_at: str | None = None
        self._service_clock: dict[str, float] = {}
        self._recorded_errors = 0
        self._error_keys: dict[str, int] = {}

    @property
    def log_date(self) -> str:
        """The start as ISO 8601 in UTC, to the second (made when read: most logs never are)."""
        return datetime.fromtimestamp(self.start_time, timezone.utc).isoformat(timespec="seconds")

    # -- writing --------------------------------------------------------------------------------

    def raise_level(self, level: str) -> None:
        """Make ``level`` the request's level if it is higher; never lowers it."""
        if LEVEL_NUMBERS[level] > LEVEL_NUMBERS[self.level]:
            self.level = level

    def put(
        self,
        section: str | None,
        key: str,
        value: Any,
        *,
        code: Any,
        message: str | None,
        level: str,
        extras: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Add an entry, or update the entry under the same key (None arguments keep old values)."""
        now = time.time()
        place = self.top if section is None else self.sections.setdefault(section, {})
        entry = place.get(key)
        if entry is None:
            entry = place[key] = {
                "value": value,
                "code": code,
                "message": message,
                "log_level": level,
                "log_time": now,
                "extras": dict(extras or {}),
            }
        else:
            for name, new in (("value", value), ("code", code), ("message", message)):
                if new is not None:
                    entry[name] = new
            entry["log_level"] = level
            entry["log_time"] = now
            entry["extras"].update(extras or {})
        self.raise_level(level)
        return entry

    def record_error(self, key: str, message: str, level: str, trace: Trace) -> None:
        """Add an automatically captured error under ``key`` (``key #2`` ... when it repeats)."""
        section = self.sections[ERROR_LOGS]
        self.raise_level(level)
        if self._recorded_errors >= MAX_RECORDED_ERRORS:
            more = section.get("more errors")
            if more is None:
                self.put(
                    ERROR_LOGS,
                    "more errors",
                    1,
                    code=None,
                    level=level,
                    extras=None,
                    message="errors beyond the per-request limit, not recorded",
                )
            else:
                more["value"] += 1
            return
        self._recorded_errors += 1
        n = self._error_keys.get(key, 0)
        name = key if n == 0 else f"{key} #{n + 1}"
        while name in section:  # only when add_to_log took the name first
            n += 1
            name = f"{key} #{n + 1}"
        self._error_keys[key] = n + 1
        entry = self.put(
            ERROR_LOGS, name, message, code=None, message=message, level=level, extras=None
        )
        if trace is not None:
            entry["error_trace"] = None
            self.traces[(ERROR_LOGS, name)] = trace

    def start_service(
        self, name: str, message: str | None, level: str, url: str | None, code: Any
    ) -> None:
        entry = self.put(
            SERVICE_LOGS, name, None, code=code, message=message, level=level, extras=None
        )
        entry.update(
            url=url,
            start_time=entry["log_time"],
            end_time=None,
            time_elapsed=None,
            error_trace=None,
        )
        self._service_clock[name] = time.monotonic()
        self.traces.pop((SERVICE_LOGS, name), None)

    def stop_service(
        self, name: str, message: str | None, level: str, code: Any, error_trace: Trace
    ) -> None:
        entry = self.put(
            SERVICE_LOGS, name, None, code=code, message=message, level=level, extras=None
        )
        entry.setdefault("url", None)
        entry.setdefault("start_time", None)
        entry["end_time"] = entry["log_time"]
        started = self._service_clock.pop(name, None)
        entry["time_elapsed"] = None if started is None else time.monotonic() - started
        entry["error_trace"] = error_trace if isinstance(error_trace, str) else None
        if error_trace is not None and not isinstance(error_trace, str):
            self.traces[(SERVICE_LOGS, name)] = error_trace

    def end(self) -> None:
        """Set ``end_time`` and ``time_elapsed`` (measured on the monotonic clock)."""
        self.end_time = time.time()
        self.time_elapsed = time.monotonic() - self._start_clock

    # -- reading --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the start, or the final duration once ended."""
        if self.time_elapsed is not None:
            return self.time_elapsed
        return time.monotonic() - self._start_clock

    def snapshot(self) -> tuple[dict[str, Any], dict[tuple[str, str], Trace]]:
        """A copy of the log (entries copied, values shared) and its pending traces.

        Cheap enough for the caller's thread; :func:`finish_snapshot` does the expensive part.
        """
        log: dict[str, Any] = {"alert_id": self.alert_id}
        for name, entries in self.sections.items():
            log[name] = {
                key: {**entry, "extras": dict(entry["extras"])} for key, entry in entries.items()
            }
        for key, entry in self.top.items():
            log[key] = {**entry, "extras": dict(entry["extras"])}
        log.update(
            log_level=self.level,
            start_time=self.start_time,
            end_time=self.end_time,
            time_elapsed=self.time_elapsed,
            log_date=self.log_date,
        )
        return log, dict(self.traces)


def finish_snapshot(log: dict[str, Any], traces: dict[tuple[str, str], Trace]) -> dict[str, Any]:
    """Render the deferred traces into a snapshot and make it JSON-safe (bounded)."""
    for (section, key), trace in traces.items():
        entry = log.get(section, {}).get(key)
        if isinstance(entry, dict):
            entry["error_trace"] = render_trace(trace)
    result: dict[str, Any] = to_json_safe(log)
    return result


def top_entry(log: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The most severe entry of a snapshot (errors first, then the latest), for a summary line."""
    best: tuple[int, int, float, str, dict[str, Any]] | None = None
    for rank, section in enumerate(reversed(SECTIONS)):
        for key, entry in (log.get(section) or {}).items():
            if not isinstance(entry, dict):
                continue
            score = (
                LEVEL_NUMBERS.get(str(entry.get("log_level")), 0),
                -rank,
                float(entry.get("log_time") or 0.0),
                key,
                entry,
            )
            if best is None or score[:3] > best[:3]:
                best = score
    return None if best is None else (best[3], best[4])


def describe_entry(key: str, entry: dict[str, Any]) -> str:
    """``key: message`` (or the value, when there is no message) on one line."""
    text = entry.get("message")
    if text is None:
        text = entry.get("value")
    return key if text is None else f"{key}: {safe_str(text)}"
