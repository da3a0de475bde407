"""Fingerprints: the grouping of events that storm control and dedup keys share.

alertkit's own grouping is the dedup key when there is one, else the event type, the message
template and the logger. An application may choose another with a *fingerprint*, a list of strings
(``extra={"fingerprint": [...]}``, ``scope.fingerprint``, or ``event.fingerprint`` in
``before_send``) in which the element :data:`DEFAULT` stands for alertkit's own grouping, so that
``["{{ default }}", tenant]`` splits each usual group by tenant. This module holds the rule once,
below the policy and the backends, which both read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alertkit.model.event import Envelope
from alertkit.model.stacktrace import safe_str

#: The element of a fingerprint that stands for alertkit's own grouping.
DEFAULT = "{{ default }}"
#: Elements kept of a fingerprint, and characters kept of each.
MAX_PARTS = 20
MAX_PART = 200


def default_fingerprint(envelope: Envelope) -> str:
    """alertkit's own grouping as readable text: the dedup key if any, else event type, template
    (the message when there is none) and logger, joined by ``" | "``."""
    if envelope.incident_key:
        return envelope.incident_key
    event = envelope.event
    template = envelope.template if envelope.template is not None else event.event_message
    return f"{event.event_type} | {template} | {envelope.logger_name or ''}"


def normalize(value: Any) -> list[str] | None:
    """A fingerprint given by the application as a list of bounded strings, or None.

    A single string is a one-element fingerprint; other elements become their ``str``; an empty
    list, or a value that is no sequence at all, is no fingerprint.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        return None
    try:
        parts = [p if type(p) is str else safe_str(p) for p in list(value)[:MAX_PARTS]]
    except Exception:  # a hostile sequence
        return None
    return [p[:MAX_PART] for p in parts] or None


def expand(envelope: Envelope) -> Envelope:
    """Replace :data:`DEFAULT` in the envelope's fingerprint by alertkit's own grouping (the
    fingerprint normalised on the way); the envelope itself, changed in place."""
    parts = normalize(envelope.fingerprint)
    if parts is not None and DEFAULT in parts:
        own = default_fingerprint(envelope)[:MAX_PART]
        parts = [own if p == DEFAULT else p for p in parts]
    envelope.fingerprint = parts
    return envelope


def fingerprint_text(parts: Sequence[str]) -> str:
    """A fingerprint as one string (its elements joined by ``"/"``): a PagerDuty dedup key, a
    column of the local inbox, a line of a digest."""
    return "/".join(parts)
