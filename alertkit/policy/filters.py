"""User filters that run once per event before fan-out: sampling, ``before_send`` and the
fingerprint's ``"{{ default }}"``.

A hook that raises or returns something odd never breaks delivery: the event goes on unchanged and
the problem is logged once per hook on ``alertkit.policy.filters``.

``before_send`` may set the event's grouping (``event.fingerprint = [...]``), although the wire
event has no such field and must not get one (WIRE.md section 1): the hook is handed a
:class:`HookEvent`, a subclass of ``AppEvent`` with that one field more, and what it returns is
turned back into a plain ``AppEvent`` whose fingerprint moves to the envelope. The copy is made
only for clients that have a ``before_send``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import msgspec

from alertkit.model.event import AppEvent, Envelope
from alertkit.model.grouping import expand, normalize

log = logging.getLogger("alertkit.hooks")


class HookEvent(AppEvent):
    """The event as ``before_send`` sees it: an ``AppEvent`` plus ``fingerprint``, the grouping
    of storm control and PagerDuty's dedup key (a list of strings; ``"{{ default }}"`` stands
    for alertkit's own). Never sent: the pipeline turns it back into an ``AppEvent``."""

    fingerprint: list[str] | None = None


BeforeSendHook = Callable[[HookEvent, dict[str, Any]], "AppEvent | None"]


def expand_fingerprint(envelope: Envelope) -> Envelope:
    """The processor that puts alertkit's own grouping where a fingerprint says
    ``"{{ default }}"`` (after the hooks, which may set one)."""
    return envelope if envelope.fingerprint is None else expand(envelope)


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
        event = envelope.event
        fingerprint = envelope.fingerprint
        view = HookEvent(
            **msgspec.structs.asdict(event),
            fingerprint=None if fingerprint is None else list(fingerprint),
        )
        envelope.event = view  # the hint's envelope shows the event the hook is given
        try:
            result = self.hook(view, hint)
        except Exception as exc:
            envelope.event = event
            self._warn(
                "before_send raised %s: %s; the event is sent unchanged", type(exc).__name__, exc
            )
            return envelope
        if result is None:
            return None
        if isinstance(result, HookEvent):
            envelope.fingerprint = normalize(result.fingerprint)
            wire = msgspec.structs.asdict(result)
            del wire["fingerprint"]
            result = AppEvent(**wire)
        if isinstance(result, AppEvent):
            envelope.event = result
            return envelope
        envelope.event = event
        self._warn(
            "before_send returned %s, not an AppEvent or None; ignored", type(result).__name__
        )
        return envelope

    def _warn(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message, *args)
