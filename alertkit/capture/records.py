"""Which log records alertkit reads, and what of them: the ignored loggers and the ``extra`` fields.

Shared by the handler (records that become events) and the breadcrumbs (records that become
crumbs), so that both follow one rule.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
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

#: A record's attributes beyond a plain record's, as the handler keeps them: their names (the
#: same tuple for every record of a shape) and their values, read in one C call (a tuple; the
#: value itself for one name). Made into the ``extra`` dict on the policy thread
#: (:func:`extra_dict`). Those who keep them keep the two side by side, not this pair: a tuple
#: holding a young tuple stays tracked by the garbage collector past its first collection,
#: and a backlog of them costs every later one (see ``docs/performance.md``).
ExtraItems = tuple[tuple[str, ...], Any]


#: A shape: the names of every attribute a plain record lacks, in the record's order, and
#: ``operator.itemgetter(*names)``.
Shape = tuple[tuple[str, ...], Callable[[dict[str, Any]], Any]]

#: The newest shape seen of each size (a record's number of attributes): a call site gives its
#: records one shape, so its names are found once. A hot path reads it before calling
#: :func:`extra_items` (see there for why a size and the names suffice).
shape_by_size: dict[int, Shape] = {}
#: Every shape seen of each size, newest first, up to :data:`_MAX_SHAPES_PER_SIZE`.
_shapes: dict[int, list[Shape]] = {}
_MAX_SHAPES_PER_SIZE = 8
_MAX_SIZES = 256


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


def extra_items(attrs: dict[str, Any]) -> ExtraItems | None:
    """A record's attributes beyond a plain record's (``extra`` fields, a formatter's
    ``message``, a filter's additions), values read now, or None for a plain record.

    The caller's-thread half of :func:`extra_fields`: a dict look-up and one C call for a
    shape seen before. A record of a known shape's size that has all of that shape's names has
    that shape: it has a plain record's attributes too, as every record does, and there is no
    room for another name. (A record whose standard attributes an application deleted, and that
    has as many more of its own, may be taken for a shape of its size and lose those.)
    """
    size = len(attrs)
    if size <= PLAIN_ATTRS:
        return None
    for names, values in _shapes.get(size, ()):
        if names[-1] in attrs:  # (most other shapes of the size fail here, without raising)
            try:
                return names, values(attrs)
            except KeyError:  # another shape of the same size, with that newest name too
                continue
    return _new_shape(attrs, size)


def _new_shape(attrs: dict[str, Any], size: int) -> ExtraItems:
    names = tuple(k for k in attrs if k not in _PLAIN_RECORD)
    values = operator.itemgetter(*names)
    if len(names) == size - PLAIN_ATTRS and len(_shapes) < _MAX_SIZES:
        # (not so for a record that lost one of a plain record's attributes: never cached)
        known = _shapes.setdefault(size, [])
        known.insert(0, (names, values))
        del known[_MAX_SHAPES_PER_SIZE:]
        shape_by_size[size] = known[0]
    return names, values(attrs)


def extra_dict(names: tuple[str, ...] | None, values: Any) -> dict[str, Any] | None:
    """The ``extra`` fields of :func:`extra_items` (its names and values, which a capture and a
    crumb hold side by side), in the order the application gave them: not a formatter's
    attributes (``message``, ``asctime``) nor underscored names; None if that leaves none."""
    if names is None:
        return None
    if len(names) == 1:
        values = (values,)
    pairs = zip(names, values, strict=True)
    extra = {k: v for k, v in pairs if k not in RECORD_ATTRS and k[:1] != "_"}
    return extra or None


def extra_fields(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The ``extra`` fields of a record's ``__dict__``, in the order the application gave them."""
    return extra_dict(*(extra_items(attrs) or (None, None)))
