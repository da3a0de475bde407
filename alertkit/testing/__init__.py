"""Test helpers for applications that use alertkit: an in-memory backend and ``capture_events``.

::

    from alertkit.testing import capture_events

    def test_checkout_reports_declines():
        with capture_events() as events:
            checkout(card="declined")
        assert events[0].event_type == "myapp.errors.PaymentDeclined"
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from alertkit.backends.base import BaseBackend
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.outcomes import Delivered, Outcome


class MemoryBackend(BaseBackend):
    """Keeps every envelope it is sent, in order; thread-safe. Scheme ``memory``."""

    scheme = "memory"
    max_batch = 100
    kinds = frozenset({"event", "metric", "acknowledge", "resolve", "change"})

    def __init__(self, *, name: str | None = None, min_level: str | int | None = None) -> None:
        super().__init__(name=name, min_level=min_level)
        self._lock = threading.Lock()
        self.envelopes: list[Envelope] = []

    @classmethod
    def _options_from_url(cls, parts: Any, query: dict[str, str]) -> dict[str, Any]:
        cls._reject_unknown("memory", query, ["name", "min_level"])
        return {}

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        with self._lock:
            self.envelopes.extend(batch)
        return [Delivered()] * len(batch)

    @property
    def events(self) -> list[AppEvent]:
        """The wire events received so far."""
        with self._lock:
            return [e.event for e in self.envelopes if e.kind == "event"]

    def clear(self) -> None:
        with self._lock:
            self.envelopes.clear()

    def describe(self) -> str:
        return "memory://"


class CapturedEvents(list[AppEvent]):
    """The events captured by :func:`capture_events`, plus their envelopes and the client."""

    def __init__(self, backend: MemoryBackend, client: Any) -> None:
        super().__init__()
        self.backend = backend
        self.client = client

    @property
    def envelopes(self) -> list[Envelope]:
        return list(self.backend.envelopes)

    def refresh(self) -> CapturedEvents:
        """Wait for queued events and reload the list."""
        self.client.flush(5.0)
        self[:] = self.backend.events
        return self


@contextmanager
def capture_events(**client_options: Any) -> Iterator[CapturedEvents]:
    """Make a client with a :class:`MemoryBackend` the default for the block; yield its events.

    Handlers made without a client inside the block, ``alertkit.get_client()`` and the
    module-level helpers use it. At the end of the block queued events are flushed into the list.
    """
    from alertkit.capture import submit
    from alertkit.capture.client import Client

    backend = MemoryBackend()
    client = Client(
        backends=[backend], sample_system=False, register_atexit=False, **client_options
    )
    captured = CapturedEvents(backend, client)
    previous = submit.replace_default(client)
    try:
        yield captured
    finally:
        captured.refresh()
        submit.replace_default(previous)
        client.shutdown(1.0)
