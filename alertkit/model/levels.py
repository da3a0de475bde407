"""Log levels: the five wire names of the event model and their bridge to :mod:`logging`.

The wire knows ``debug info warning error fatal``; Python's ``critical`` is ``fatal`` there. Every place
that takes a level (``Client.log``, ``min_level=`` on a backend, ``escalate(from_level=...)``) goes
through :func:`normalize_level` so that one spelling rule holds everywhere.
"""

from __future__ import annotations

import logging

_ALIASES: dict[str, str] = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "fatal": "fatal",
    "critical": "fatal",
}

LEVEL_NUMBERS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


def normalize_level(level: str | int) -> str:
    """Return the wire name of ``level`` (a name in any case, or a :mod:`logging` number).

    Raises:
        ValueError: the level is not one of debug, info, warning, error, fatal/critical.
    """
    if isinstance(level, bool):
        raise ValueError(f"unknown log level {level!r}")
    if isinstance(level, int):
        return level_from_number(level)
    if isinstance(level, str):
        wire = _ALIASES.get(level.strip().lower())
        if wire is not None:
            return wire
    raise ValueError(
        f"unknown log level {level!r}: expected one of debug, info, warning, error, fatal (or critical)"
    )


def level_from_number(levelno: int) -> str:
    """Map a :mod:`logging` number to the wire level at or below it (custom levels round down)."""
    if levelno >= logging.CRITICAL:
        return "fatal"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def level_number(level: str | int) -> int:
    """Return the :mod:`logging` number of a level name or number (numbers pass through)."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    return LEVEL_NUMBERS[normalize_level(level)]
