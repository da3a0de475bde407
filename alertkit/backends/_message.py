"""One readable summary of an event, rendered for people: plain text, HTML and Slack Block Kit.

The four notifiers (Slack, email, Telegram, WhatsApp) show the same facts in the same order, so
:func:`summarize` collects them once from the :class:`~alertkit.model.event.Envelope` and the renderers
only lay them out. The title line reads like a good email subject::

    [ERROR] PaymentDeclined: card refused — checkout (production)

Every text that comes from the application is bounded here (message, trace, details, request log),
so no notifier can be handed a megabyte of ``extra`` fields.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from alertkit.model.event import Envelope
from alertkit.model.levels import level_from_number
from alertkit.model.stacktrace import render_stacktrace

MAX_TITLE_MESSAGE = 120
MAX_MESSAGE = 3000
MAX_TRACE_FRAMES = 5
MAX_TRACE_CHARS = 2500
MAX_DETAILS = 20
MAX_DETAIL_VALUE = 300
MAX_REQUEST_LOG = 1500
#: Breadcrumbs a message shows (the newest), and characters of each line.
MAX_BREADCRUMBS = 5
MAX_BREADCRUMB_LINE = 200


@dataclass(frozen=True, slots=True)
class Summary:
    """The facts of one event a person needs, bounded and in display order.

    Attributes:
        title: the one-line headline (``[LEVEL] Type: message — app (stage)``).
        name: the headline without the message (``[LEVEL] Type — app (stage)``).
        level: the wire level, e.g. ``error``.
        message: the full event message (bounded).
        fields: label/value pairs (level, event type, app version, stage, host ...), empty
            values left out.
        trace: the innermost frames of the stack trace as text, or ``""``.
        details: the event's details as label/value text pairs.
        links: ``(href, text)`` pairs.
        request_log: the scope's request log as indented JSON, or ``""``.
        breadcrumbs: the newest :data:`MAX_BREADCRUMBS` breadcrumbs, one line each
            (``HH:MM:SS level category: message``), oldest first.
        breadcrumbs_total: how many breadcrumbs the event carries.
        alert_id: the request log's ``alert_id`` if there is one, else the event id.
        time: the event time, ``YYYY-MM-DD HH:MM:SS UTC``.
    """

    title: str
    name: str
    level: str
    message: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    trace: str = ""
    details: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    request_log: str = ""
    breadcrumbs: list[str] = field(default_factory=list)
    breadcrumbs_total: int = 0
    alert_id: str = ""
    time: str = ""


def one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return " ".join(text.split())


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts in (an emoji counts two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def cut(text: str, limit: int, marker: str = "…", *, utf16: bool = False) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``marker`` when cut: the one cut
    every backend (and the CLI's tables) uses. With ``utf16`` the limit counts UTF-16 code units,
    as Telegram does."""
    if not utf16:
        if len(text) <= limit:
            return text
        return text[: max(0, limit - len(marker))] + marker
    if utf16_len(text) <= limit:
        return text
    budget, used = limit - utf16_len(marker), 0
    for index, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            return text[:index] + marker
    return text  # pragma: no cover - the length check above returned already


def short_type(event_type: str) -> str:
    """``PaymentDeclined`` for ``myapp.errors.PaymentDeclined``: the last dotted part."""
    return event_type.rstrip(".").rpartition(".")[2] or event_type


def format_time(millis: int | None, fallback: float) -> str:
    """Milliseconds since the epoch (or ``fallback`` seconds) as ``YYYY-MM-DD HH:MM:SS UTC``."""
    seconds = millis / 1000 if millis is not None else fallback
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def alert_id(envelope: Envelope) -> str:
    """The request log's ``alert_id`` when the event escalates one, else the event id."""
    log = envelope.request_log
    if isinstance(log, dict) and log.get("alert_id"):
        return str(log["alert_id"])
    return envelope.event_id


def json_object(value: Any) -> dict[str, Any]:
    """``value`` as a dict: parsed when it is JSON text, ``{}`` when it is not an object.

    Notifier services answer JSON that may be missing, truncated or of another shape; this reads
    it without a chain of ``isinstance`` checks.
    """
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value) if value else None
        except ValueError:
            value = None
    return value if isinstance(value, dict) else {}


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
        except (TypeError, ValueError):
            text = str(value)
    return cut(text, MAX_DETAIL_VALUE)


def _trace(envelope: Envelope) -> str:
    text = render_stacktrace(envelope.event.event_stacktrace, max_frames=MAX_TRACE_FRAMES)
    if not text and envelope.exc_text:
        # Only the formatted text is known: keep its end, where the innermost frames are.
        lines = envelope.exc_text.rstrip().splitlines()
        keep = 2 * MAX_TRACE_FRAMES + 1
        text = "\n".join((["  ..."] if len(lines) > keep else []) + lines[-keep:])
    if len(text) > MAX_TRACE_CHARS:
        text = "…" + text[-(MAX_TRACE_CHARS - 1) :]
    return text


def breadcrumb_line(crumb: Any) -> str:
    """One breadcrumb as a line: ``HH:MM:SS level category: message``."""
    if not isinstance(crumb, dict):
        return cut(one_line(str(crumb)), MAX_BREADCRUMB_LINE)
    stamp = str(crumb.get("timestamp") or "")
    clock = stamp[11:19] if len(stamp) >= 19 else stamp
    category = crumb.get("category")
    head = " ".join(str(p) for p in (clock, crumb.get("level") or "", category or "") if p)
    text = f"{head}: {crumb.get('message') or ''}" if head else str(crumb.get("message") or "")
    return cut(one_line(text), MAX_BREADCRUMB_LINE)


def fingerprint_label(envelope: Envelope) -> str:
    """The fingerprint the application chose, as one line, or ``""``."""
    parts = envelope.fingerprint
    return " / ".join(str(p) for p in parts) if parts else ""


def summarize(envelope: Envelope, *, app_name: str | None = None) -> Summary:
    """Collect what a person should see about ``envelope``.

    Args:
        envelope: the event and its context.
        app_name: the application's name (the client's ``app_name``); the logger name otherwise.
    """
    event = envelope.event
    level = event.log_level or level_from_number(envelope.levelno)
    message = cut(event.event_message or "", MAX_MESSAGE)
    event_type = event.event_type or "event"
    where = app_name or envelope.logger_name or ""
    stage = event.deployment_stage or ""
    name = one_line(f"[{level.upper()}] {short_type(event_type)}")
    headline = cut(one_line(message), MAX_TITLE_MESSAGE)
    title = f"{name}: {headline}" if headline else name
    if where or stage:
        suffix = " " + one_line(
            "—" + (f" {where}" if where else "") + (f" ({stage})" if stage else "")
        )
        title += suffix
        name += suffix
    when = format_time(event.event_time, envelope.created)
    tags = ", ".join(f"{k}:{v}" if v else k for k, v in envelope.tags.items())
    ident = alert_id(envelope)
    candidates = [
        ("Level", level),
        ("Event type", event_type),
        ("App", app_name or ""),
        ("App version", event.context_app_version or ""),
        ("Stage", stage),
        ("Host", event.context_env_hostname or ""),
        ("Logger", envelope.logger_name or ""),
        ("Time", when),
        ("User", event.event_user or ""),
        ("URL", event.context_url or ""),
        ("Tags", tags),
        ("Fingerprint", fingerprint_label(envelope)),
        ("Alert id" if ident != envelope.event_id else "Event id", ident),
        ("Trace id", envelope.trace_id or ""),
        ("Span id", envelope.span_id or ""),
    ]
    fields = [
        (label, cut(one_line(value), MAX_DETAIL_VALUE)) for label, value in candidates if value
    ]
    details = [
        (str(key), _value_text(value))
        for key, value in list(envelope.details.items())[:MAX_DETAILS]
    ]
    if len(envelope.details) > MAX_DETAILS:
        details.append(("…", f"{len(envelope.details) - MAX_DETAILS} more not shown"))
    links = [
        (str(link["href"]), str(link.get("text") or link["href"]))
        for link in envelope.links
        if isinstance(link, dict) and link.get("href")
    ]
    request_log = ""
    if envelope.request_log:
        request_log = cut(
            json.dumps(envelope.request_log, ensure_ascii=False, default=str, indent=2),
            MAX_REQUEST_LOG,
        )
    crumbs = list(envelope.breadcrumbs or ())
    return Summary(
        title=title,
        name=name,
        level=level,
        message=message,
        fields=fields,
        trace=_trace(envelope),
        details=details,
        links=links,
        request_log=request_log,
        breadcrumbs=[breadcrumb_line(c) for c in crumbs[-MAX_BREADCRUMBS:]],
        breadcrumbs_total=len(crumbs),
        alert_id=ident,
        time=when,
    )


def breadcrumbs_heading(summary: Summary) -> str:
    """``Breadcrumbs`` with how many of them are shown (``last 5 of 48``) when not all."""
    shown = len(summary.breadcrumbs)
    if shown < summary.breadcrumbs_total:
        return f"Breadcrumbs (last {shown} of {summary.breadcrumbs_total})"
    return "Breadcrumbs"


# -- plain text ------------------------------------------------------------------------------------


def render_text(summary: Summary) -> str:
    """The summary as plain text: title, message, fields, trace, breadcrumbs, details, links,
    request log."""
    parts = [summary.title]
    if summary.message:
        parts.append(summary.message)
    parts.append("\n".join(f"{label}: {value}" for label, value in summary.fields))
    if summary.trace:
        parts.append("Stack trace (innermost frames):\n" + summary.trace)
    if summary.breadcrumbs:
        lines = "\n".join(f"  {line}" for line in summary.breadcrumbs)
        parts.append(f"{breadcrumbs_heading(summary)}:\n{lines}")
    if summary.details:
        parts.append("Details:\n" + "\n".join(f"  {k}: {v}" for k, v in summary.details))
    if summary.links:
        parts.append(
            "Links:\n"
            + "\n".join(
                f"  {text}: {href}" if text != href else f"  {href}" for href, text in summary.links
            )
        )
    if summary.request_log:
        parts.append("Request log:\n" + summary.request_log)
    return "\n\n".join(parts)


# -- HTML (email) ----------------------------------------------------------------------------------

_COLOURS = {
    "debug": "#6b7280",
    "info": "#2563eb",
    "warning": "#d97706",
    "error": "#dc2626",
    "fatal": "#7f1d1d",
}


def render_html(summary: Summary) -> str:
    """The summary as a small self-contained HTML document (inline styles, for mail clients)."""
    esc = html.escape
    colour = _COLOURS.get(summary.level, "#374151")
    rows = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0;color:#6b7280">{esc(label)}</th>'
        f"<td>{esc(value)}</td></tr>"
        for label, value in summary.fields
    )
    body = [
        f'<h2 style="color:{colour};font-size:16px">{esc(summary.title)}</h2>',
        f'<p style="white-space:pre-wrap">{esc(summary.message)}</p>' if summary.message else "",
        f"<table>{rows}</table>",
    ]
    pre = 'style="background:#f3f4f6;padding:8px;white-space:pre-wrap;font-size:12px"'
    if summary.trace:
        body.append(f"<h3>Stack trace (innermost frames)</h3><pre {pre}>{esc(summary.trace)}</pre>")
    if summary.breadcrumbs:
        crumbs = esc("\n".join(summary.breadcrumbs))
        body.append(f"<h3>{esc(breadcrumbs_heading(summary))}</h3><pre {pre}>{crumbs}</pre>")
    if summary.details:
        items = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in summary.details)
        body.append(f"<h3>Details</h3><ul>{items}</ul>")
    if summary.links:
        items = "".join(
            f'<li><a href="{esc(href, quote=True)}">{esc(text)}</a></li>'
            for href, text in summary.links
        )
        body.append(f"<h3>Links</h3><ul>{items}</ul>")
    if summary.request_log:
        body.append(f"<h3>Request log</h3><pre {pre}>{esc(summary.request_log)}</pre>")
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family:sans-serif;font-size:14px">' + "".join(body) + "</body></html>"
    )


# -- Slack Block Kit -------------------------------------------------------------------------------

#: Block Kit limits: header text 150 characters, section text 3000, at most 10 fields of 2000.
SLACK_HEADER = 150
SLACK_TEXT = 3000
SLACK_FIELDS = 10


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return "```" + cut(slack_escape(text).replace("```", "'''"), SLACK_TEXT - 6) + "```"


def slack_blocks(summary: Summary) -> list[dict[str, Any]]:
    """Block Kit blocks for the summary: header, message, fields, trace, breadcrumbs, details,
    links."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": cut(summary.title, SLACK_HEADER),
                "emoji": False,
            },
        },
    ]
    if summary.message:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": cut(slack_escape(summary.message), SLACK_TEXT)},
            }
        )
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{slack_escape(label)}*\n{slack_escape(value)}", 2000)}
        for label, value in summary.fields[:SLACK_FIELDS]
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    overflow = summary.fields[SLACK_FIELDS:]
    if overflow:
        text = "  ·  ".join(f"*{slack_escape(k)}*: {slack_escape(v)}" for k, v in overflow)
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, SLACK_TEXT)}]}
        )
    if summary.trace:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _code(summary.trace)}})
    if summary.breadcrumbs:
        heading = f"*{slack_escape(breadcrumbs_heading(summary))}*\n"
        text = heading + _code("\n".join(summary.breadcrumbs))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if summary.details:
        lines = "\n".join(f"*{slack_escape(k)}*: {slack_escape(v)}" for k, v in summary.details)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(lines, SLACK_TEXT)}}
        )
    if summary.request_log:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _code(summary.request_log)}}
        )
    if summary.links:
        links = " · ".join(
            f"<{href.replace('|', '%7C')}|{slack_escape(text)}>" for href, text in summary.links
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(links, SLACK_TEXT)}]}
        )
    return blocks
