"""Which log records alertkit reads, and what of them: the ignored loggers and the ``extra`` fields.

Shared by the handler (records that become events) and the breadcrumbs (records that become
crumbs), so that both follow one rule.
"""

from __future__ import annotations

import logging
from typing import Any

#: Loggers whose records are neither events nor breadcrumbs: alertkit's own, and the libraries
#: the backends use, so that a failing destination cannot feed on its own error reports.
IGNORED_LOGGERS: frozenset[str] = frozenset(
    {
        "alertkit",
        "urllib3",
        "requests",
        "redis",
        "http.client",
        "smtplib",
        "mail.log",
        "asyncio",
        "concurrent.futures",
    }
)
#: :func:`is_ignored`'s answers so far, by logger name (a hot path reads it before calling).
known_ignored: dict[str, bool] = {}

#: Attributes every LogRecord has; whatever else is in ``record.__dict__`` came from ``extra``.
_PLAIN_RECORD = logging.LogRecord("", 0, "", 0, "", (), None).__dict__
RECORD_ATTRS: frozenset[str] = frozenset(_PLAIN_RECORD) | {"message", "asctime", "taskName"}
PLAIN_ATTRS = len(_PLAIN_RECORD)
#: ``extra`` keys that steer delivery (the handler reads them) rather than describe the record.
STEERING = ("incident_key", "dedup_key", "links", "images", "tags", "fingerprint")
#: The extra keys of each record *shape* (its attribute names, in order) seen so far: a call
#: site gives its records one shape, so its extra keys are found once, not at every call.
_extra_keys: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_SHAPES = 1024


def is_ignored(name: str) -> bool:
    """True for the loggers in :data:`IGNORED_LOGGERS` and their children."""
    cached = known_ignored.get(name)
    if cached is None:
        root = name
        cached = False
        while root:
            if root in IGNORED_LOGGERS:
                cached = True
                break
            root = root.rpartition(".")[0]
        if len(known_ignored) < 10_000:
            known_ignored[name] = cached
    return cached


def extra_fields(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The ``extra`` fields of a record's ``__dict__``, in the order the application gave them."""
    if len(attrs) <= PLAIN_ATTRS:  # no more attributes than a plain record: no extra (most)
        return None
    shape = tuple(attrs)  # in C; the names' hashes are cached, so the look-up is cheap too
    keys = _extra_keys.get(shape)
    if keys is None:
        keys = tuple(k for k in shape if k not in RECORD_ATTRS and not k.startswith("_"))
        if len(_extra_keys) < _MAX_SHAPES:
            _extra_keys[shape] = keys
    if not keys:
        return None
    return {k: attrs[k] for k in keys}
