"""Guance webhook bodies into alertkit envelopes: the mapping behind the bridge's ``/guance``.

WIRE.md section 5. ``critical``/``error``/``warning``/``info`` trigger with that severity,
``nodata`` triggers a warning, ``ok``/``nodata_ok``/``nodata_as_ok``/``manual_ok`` resolve. The
dedup key is ``df_monitor_checker_event_ref`` (else ``df_fault_id``), the same for a monitor's
trigger and resolve; never ``df_event_id``, which is new for every event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alertkit.model.event import Envelope
from alertkit.model.levels import LEVEL_NUMBERS

if TYPE_CHECKING:
    from alertkit.capture.client import Client

#: Guance status -> (wire log level, PagerDuty severity) for triggers.
TRIGGER_STATUSES = {
    "critical": ("fatal", "critical"),
    "error": ("error", "error"),
    "warning": ("warning", "warning"),
    "info": ("info", "info"),
    "nodata": ("warning", "warning"),
}
RESOLVE_STATUSES = frozenset({"ok", "nodata_ok", "nodata_as_ok", "manual_ok"})


class BadRequestError(Exception):
    """A request body the bridge cannot use; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class GuanceAlert:
    """What one webhook asks for: a trigger (with its envelope) or a resolve of ``dedup_key``."""

    action: str
    dedup_key: str | None
    envelope: Envelope | None = None


def read_guance(client: Client, data: dict[str, Any]) -> GuanceAlert:
    """Map a Guance webhook body.

    Raises:
        BadRequestError: ``df_title``/``df_status`` missing, an unknown status, bad
            ``df_dimension_tags``, a ``timestamp``/``date`` out of range, or a resolve without a
            dedup key (``field`` names it).
    """
    for field in ("df_title", "df_status"):
        if not isinstance(data.get(field), str) or not data[field]:
            raise BadRequestError(f"{field} is required (a non-empty string)", field)
    status = data["df_status"].lower()
    key = _text(data.get("df_monitor_checker_event_ref")) or _text(data.get("df_fault_id"))
    if status in RESOLVE_STATUSES:
        if not key:
            raise BadRequestError(
                "a resolve needs df_monitor_checker_event_ref or df_fault_id",
                "df_monitor_checker_event_ref",
            )
        return GuanceAlert("resolve", key)
    if status not in TRIGGER_STATUSES:
        raise BadRequestError(f"unknown df_status {data['df_status']!r}", "df_status")
    return GuanceAlert("trigger", key, guance_trigger(client, data, status, key))


def guance_trigger(client: Client, data: dict[str, Any], status: str, key: str | None) -> Envelope:
    """The trigger envelope of a Guance alert (WIRE.md section 5 mapping)."""
    level, severity = TRIGGER_STATUSES[status]
    tags = _dimension_tags(data.get("df_dimension_tags"))
    title = data["df_title"]
    source = tags.get("host") or _text(data.get("df_workspace_name")) or "guance"
    event = client.events.new(level, "issue", _text(data.get("df_monitor_name")) or "guance", title)
    event.context_env_hostname = source
    when = _unix_seconds(data)
    if when is not None:
        event.event_time = int(when * 1000)
    details: dict[str, Any] = {"status": status}
    for name, field in (
        ("message", "df_message"),
        ("value", "Result"),
        ("monitor", "df_monitor_name"),
        ("checker", "df_monitor_checker_name"),
        ("workspace", "df_workspace_name"),
        ("event_id", "df_event_id"),
    ):
        if data.get(field) not in (None, ""):
            details[name] = data[field]
    link = _text(data.get("df_event_link"))
    overrides = {"summary": title, "source": source, "severity": severity, "client": "Guance"}
    if link:
        overrides["client_url"] = link
    return Envelope(
        event=event,
        levelno=LEVEL_NUMBERS[level],
        logger_name="guance",
        template=_text(data.get("df_monitor_checker_name")) or title,
        details=details,
        incident_key=key,
        links=[{"href": link, "text": "Guance event"}] if link else [],
        tags=tags,
        payload=overrides,
    )


#: Unix seconds after this (year 5138) are taken for a unit mistake rather than a date.
MAX_UNIX_SECONDS = 100_000_000_000


def _unix_seconds(data: dict[str, Any]) -> float | None:
    """``timestamp`` (else ``date``) when it is a positive number of unix seconds; a number out of
    range is a 400 (it would reach PagerDuty or the inbox as an impossible date or not at all)."""
    field = "timestamp" if data.get("timestamp") else "date"
    when = data.get(field)
    if not isinstance(when, int | float) or isinstance(when, bool) or when == 0:
        return None
    if not 0 < when < MAX_UNIX_SECONDS:
        raise BadRequestError(f"{field} must be unix seconds, got {when!r:.40}", field)
    return float(when)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _dimension_tags(value: Any) -> dict[str, str]:
    """``df_dimension_tags``: a JSON string (``'{"host":"web001"}'``) or already an object."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequestError(
                "df_dimension_tags is not a JSON object", "df_dimension_tags"
            ) from None
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise BadRequestError("df_dimension_tags is not a JSON object", "df_dimension_tags")
    return {str(k): str(v) for k, v in value.items()}
