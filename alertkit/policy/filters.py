"""User filters that run once per event before fan-out: sampling and ``before_send``.

A hook that raises or returns something odd never breaks delivery: the event goes on unchanged and
the problem is logged once per hook on ``alertkit.policy.filters``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from alertkit.model.event import AppEvent, Envelope

log = logging.getLogger("alertkit.hooks")

BeforeSendHook = Callable[[AppEvent, dict[str, Any]], "AppEvent | None"]


class Sampler:
    """Keeps each application event with probability ``rate``; other kinds always pass."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, envelope: Envelope) -> Envelope | None:
        if envelope.kind != "event" or self.rate >= 1.0:
            return envelope
        return envelope if random.random() < self.rate else None


class BeforeSend:
    """Calls ``hook(event, hint)``; None drops the event, an ``AppEvent`` replaces it.

    ``hint`` carries what the wire event does not: ``envelope`` (the whole envelope),
    ``logger_name``, ``details``, ``exc_text``, ``tags``.
    """

    def __init__(self, hook: BeforeSendHook) -> None:
        self.hook = hook
        self._warned = False

    def __call__(self, envelope: Envelope) -> Envelope | None:
        if envelope.kind != "event":
            return envelope
        hint = {
            "envelope": envelope,
            "logger_name": envelope.logger_name,
            "details": envelope.details,
            "exc_text": envelope.exc_text,
            "tags": envelope.tags,
        }
        try:
            result = self.hook(envelope.event, hint)
        except Exception as exc:
            self._warn(
                "before_send raised %s: %s; the event is sent unchanged", type(exc).__name__, exc
            )
            return envelope
        if result is None:
            return None
        if isinstance(result, AppEvent):
            envelope.event = result
            return envelope
        self._warn(
            "before_send returned %s, not an AppEvent or None; ignored", type(result).__name__
        )
        return envelope

    def _warn(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message, *args)
