"""Durability: the SQLite spool that keeps what could not be delivered, for a later replay.

``alertkit.spool.Spool`` is also usable on its own (see docs/spool.md); the pipeline's link to it
is :mod:`alertkit.delivery.spooling`.
"""

from alertkit.spool.store import Spool, SpoolCorruptError, SpoolError

__all__ = ["Spool", "SpoolCorruptError", "SpoolError"]
