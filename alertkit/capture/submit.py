"""What the capture modules below the client need from it, and the default client's slot.

Scopes, metrics and incident messages build events and hand captures to a client; they depend on
this small interface, not on :class:`alertkit.Client`, so that none of them imports the client (or
``alertkit.init``) and the capture stage reads top to bottom: api -> client -> scope, metrics,
incidents -> this module.

A *capture* (``alertkit.delivery.pipeline.Capture``) is a callable run on the pipeline's policy
thread that builds the envelope (None: no event); the caller's thread only snapshots what it needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from concurrent.futures import Future

    from alertkit.capture.events import EventFactory
    from alertkit.delivery.pipeline import Capture, Results
    from alertkit.model.event import AppEvent, Envelope


class Submitter(Protocol):
    """The part of a client that scopes, metrics and incident messages use."""

    @property
    def events(self) -> EventFactory:
        """Makes events and envelopes with the client's defaults."""
        ...

    def create_new_app_event(
        self,
        log_level: str = ...,
        classification: str = ...,
        event_type: str = ...,
        event_message: str = ...,
        exc_info: Any = ...,
    ) -> AppEvent:
        """A new event filled with the client's defaults."""
        ...

    def envelope_for(self, event: AppEvent, **fields: Any) -> Envelope:
        """Wrap an event for the pipeline, with the client's tags and level number."""
        ...

    def submit_capture(self, capture: Capture) -> bool:
        """Queue a capture nobody waits for; False when the pipeline refused it."""
        ...

    def enqueue(self, capture: Capture, future: Future[Results] | None = None) -> bool:
        """Queue a capture whose results settle ``future``; False (future settled) if refused."""
        ...


# -- the default client (alertkit.init / alertkit.get_client) --------------------------------------

_default: Submitter | None = None
_lock = threading.Lock()
_factory: Callable[[], Submitter] | None = None


def use_factory(factory: Callable[[], Submitter]) -> None:
    """Say how to make the default client on first use (``alertkit.capture.api`` gives Client)."""
    global _factory
    _factory = factory


def replace_default(client: Submitter | None) -> Submitter | None:
    """Make ``client`` the default (None: make one on next use); return the one it replaces,
    which the caller shuts down or puts back."""
    global _default
    with _lock:
        previous, _default = _default, client
    return previous


def default_client() -> Submitter:
    """The default client, made on first use; nothing is kept if making it raises.

    Raises:
        RuntimeError: no factory was given (``alertkit`` was not imported).
    """
    global _default
    client = _default  # made already (every call but the first): no lock
    if client is not None:
        return client
    with _lock:
        if _default is None:
            if _factory is None:
                raise RuntimeError("no default client: import alertkit first")
            _default = _factory()
        return _default
