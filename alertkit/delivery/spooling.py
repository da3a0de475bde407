"""The durable spool as the pipeline uses it: give-ups go in, replays come out.

:mod:`alertkit.spool.store` stores envelopes in SQLite; this module connects it to one backend's worker.
A replayed event gets a ticket whose result decides the row's fate: delivered rows are deleted,
rejected rows dropped for good, anything else released to be tried again later.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from alertkit.delivery.stats import BackendStats
from alertkit.delivery.worker import Delivery, Ticket
from alertkit.model.outcomes import Delivered, Dropped, Rejected, Result, Spooled
from alertkit.spool.store import Spool, SpoolError

log = logging.getLogger("alertkit.spooling")


class BackendSpool:
    """One backend's view of the shared spool (implements ``worker.SpoolLink``)."""

    def __init__(self, spool: Spool, backend_name: str, stats: BackendStats) -> None:
        self.spool = spool
        self.name = backend_name
        self.stats = stats

    def save(self, deliveries: Sequence[Delivery], reason: str) -> Result:
        """Spool fresh deliveries that could not be delivered now."""
        try:
            self.spool.put_many(self.name, [d.envelope for d in deliveries], reason)
        except SpoolError as exc:
            log.warning("%s: could not spool %d events: %s", self.name, len(deliveries), exc)
            self.stats.add("dropped", len(deliveries), reason=f"spool failed: {exc}")
            return Dropped(f"{reason}; spool failed: {exc}")
        self.stats.add("spooled", len(deliveries), reason=reason)
        return Spooled(reason)

    def has_pending(self) -> bool:
        try:
            return self.spool.pending(self.name)
        except SpoolError:
            return False

    def claim(self, limit: int) -> list[Delivery]:
        try:
            rows = self.spool.claim(self.name, limit)
        except SpoolError as exc:
            log.warning("%s: could not read the spool: %s", self.name, exc)
            return []
        now = time.time()
        deliveries = []
        for row in rows:
            ticket = Ticket(1, functools.partial(self._settle_ticket, row.id))
            deliveries.append(Delivery(row.envelope, ticket, spool_id=row.id, born=now))
        return deliveries

    def _settle_ticket(self, row_id: int, ticket: Ticket) -> None:
        self._settle(row_id, ticket.results or {})

    def _settle(self, row_id: int, results: dict[str, Result]) -> None:
        result = results.get(self.name)
        try:
            if isinstance(result, Delivered):
                self.spool.ack([row_id])
            elif isinstance(result, Rejected):
                self.spool.drop([row_id])
            else:
                self.spool.release([row_id], getattr(result, "reason", None))
        except SpoolError as exc:
            log.warning("%s: spool update failed for row %s: %s", self.name, row_id, exc)

    def evicted(self) -> int:
        """Evictions of this backend's rows (from the file; after shutdown, as they were then)."""
        try:
            return int(self.spool.evicted().get(self.name, 0))
        except SpoolError:
            return 0

    def report(self) -> dict[str, Any]:
        """The spool's part of ``Client.stats()``: ``evicted``, and ``spool_quarantined``, the
        damaged spool file last moved aside by this process (None when there was none)."""
        moved = self.spool.quarantined
        return {"evicted": self.evicted(), "spool_quarantined": str(moved[-1]) if moved else None}
