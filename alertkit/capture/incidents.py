"""Incident lifecycle: acknowledge, resolve and change events as pipeline envelopes.

``Client.acknowledge``, ``Client.resolve`` and ``Client.change_event`` build their envelopes
here and queue them like any event, so they get the same retries, stats and shutdown budget.
Only backends whose ``kinds`` include the envelope's kind receive it (PagerDuty does; the others
answer ``Skipped``). The envelope carries a small informational ``AppEvent`` (for the local
inbox and ``alertkit.testing``) and its data in ``Envelope.payload``:

* kind ``"acknowledge"`` / ``"resolve"``: ``{"dedup_key": str}``, the key of the incident to act on
  (the same key the trigger used; PagerDuty's ``Delivered.info["dedup_key"]`` after a trigger).
* kind ``"change"``: ``{"summary": str, "source": str | None, "timestamp": ISO 8601 str | None,
  "custom_details": dict | None, "links": [{"href": str, "text": str}]}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from alertkit.capture.submit import Submitter
from alertkit.model.event import Envelope
from alertkit.model.values import to_json_safe

#: Lifecycle envelopes pass every backend's ``min_level``: a resolve must not be filtered out
#: by the level that let its trigger through.
_LIFECYCLE_LEVEL = logging.CRITICAL


def lifecycle_envelope(client: Submitter, action: str, dedup_key: str) -> Envelope:
    """An ``acknowledge`` or ``resolve`` envelope for the incident ``dedup_key``.

    Raises:
        ValueError: ``action`` is not acknowledge/resolve, or ``dedup_key`` is empty.
        TypeError: ``dedup_key`` is not a string.
    """
    if action not in ("acknowledge", "resolve"):
        raise ValueError(f"action must be 'acknowledge' or 'resolve', not {action!r}")
    if not isinstance(dedup_key, str):
        raise TypeError(f"dedup_key must be a string, not {type(dedup_key).__name__}")
    if not dedup_key.strip():
        raise ValueError("dedup_key must not be empty")
    event = client.events.new("info", "incident", action, f"{action} {dedup_key}")
    return Envelope(
        event=event,
        kind=action,
        levelno=_LIFECYCLE_LEVEL,
        incident_key=dedup_key,
        payload={"dedup_key": dedup_key},
    )


def change_envelope(
    client: Submitter,
    summary: str,
    *,
    source: str | None = None,
    custom_details: Mapping[str, Any] | None = None,
    links: Sequence[Mapping[str, str]] | None = None,
    timestamp: datetime | float | str | None = None,
) -> Envelope:
    """A ``change`` envelope (a deploy, a config change): shown beside incidents, pages no one.

    Raises:
        TypeError: a value of the wrong type (the message names it).
        ValueError: an empty summary, or a link without ``href``.
    """
    if not isinstance(summary, str):
        raise TypeError(f"summary must be a string, not {type(summary).__name__}")
    if not summary.strip():
        raise ValueError("summary must not be empty")
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be a string, not {type(source).__name__}")
    if custom_details is not None and not isinstance(custom_details, Mapping):
        raise TypeError("custom_details must be a mapping")
    link_list = []
    for link in links or ():
        if not isinstance(link, Mapping) or not link.get("href"):
            raise ValueError(f"links: every link needs an 'href', got {link!r}")
        link_list.append({k: str(link[k]) for k in ("href", "text") if link.get(k)})
    event = client.events.new("info", "change", "change", summary)
    payload: dict[str, Any] = {
        "summary": summary,
        "source": source,
        "timestamp": _iso(timestamp),
        "custom_details": to_json_safe(dict(custom_details)) if custom_details else None,
        "links": link_list,
    }
    return Envelope(event=event, kind="change", levelno=_LIFECYCLE_LEVEL, payload=payload)


def _iso(value: datetime | float | str | None) -> str | None:
    """ISO 8601 from a datetime (naive means UTC), epoch seconds, or an ISO string (checked)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return when.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc).isoformat()
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp is not ISO 8601: {value!r}") from None
        return value
    raise TypeError(
        f"timestamp must be a datetime, epoch seconds or ISO 8601 string, "
        f"not {type(value).__name__}"
    )
