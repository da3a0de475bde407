"""The shared notifier renderer (alertkit/backends/_message.py): facts, bounds, escaping."""

from __future__ import annotations

from alertkit import AppEvent, Envelope
from alertkit.backends._message import (
    MAX_DETAILS,
    MAX_TITLE_MESSAGE,
    render_html,
    render_text,
    slack_blocks,
    summarize,
)
from alertkit.testing import MemoryBackend
from tests.backends._notifiers import client_factory, declined


def bare(**fields) -> Envelope:
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type=fields.pop("type", "job"),
        event_message=fields.pop("message", "failed"),
        log_level="error",
        event_time=1_700_000_000_000,
    )
    return Envelope(event=event, **fields)


def test_title_is_one_line_with_the_parts_it_has():
    assert summarize(bare()).title == "[ERROR] job: failed"
    assert summarize(bare(), app_name="billing").title == "[ERROR] job: failed — billing"
    summary = summarize(bare(type="a.b.Crash\n", message="two\nlines", logger_name="x.y"))
    assert summary.title == "[ERROR] Crash: two lines — x.y"
    assert summary.name == "[ERROR] Crash — x.y"
    long = summarize(bare(message="m" * 500)).title
    assert long == "[ERROR] job: " + "m" * (MAX_TITLE_MESSAGE - 1) + "…"


def test_time_and_alert_id():
    summary = summarize(bare(request_log={"alert_id": "abc", "error_logs": {"db": "down"}}))
    assert summary.time == "2023-11-14 22:13:20 UTC"
    assert summary.alert_id == "abc"
    assert ("Alert id", "abc") in summary.fields
    assert '"db": "down"' in summary.request_log
    envelope = bare()
    assert summarize(envelope).alert_id == envelope.event_id
    assert ("Event id", envelope.event_id) in summarize(envelope).fields


def test_trace_keeps_the_innermost_frames():
    with client_factory() as make:
        client = make([MemoryBackend()])
        summary = summarize(declined(client))
    assert summary.trace.splitlines()[-1].endswith("PaymentDeclined: card refused")
    assert "in _charge" in summary.trace
    text = "\n".join(f'  File "f.py", line {n}, in f{n}' for n in range(100)) + "\nValueError: x"
    fallback = summarize(bare(exc_text=text)).trace
    assert fallback.startswith("  ...") and fallback.endswith("ValueError: x")
    assert "in f99" in fallback and "in f10\n" not in fallback


def test_details_are_bounded():
    details = {f"k{i}": "v" * 1000 for i in range(MAX_DETAILS + 5)}
    summary = summarize(bare(details=details))
    assert len(summary.details) == MAX_DETAILS + 1
    assert summary.details[-1] == ("…", "5 more not shown")
    assert all(len(value) <= 300 for _, value in summary.details)


def test_html_and_slack_escape_application_text():
    envelope = bare(
        message="<b>&</b>",
        details={"<k>": "<v>"},
        links=[{"href": "https://x/?a=1&b=2", "text": "<run>"}],
    )
    html = render_html(summarize(envelope))
    assert "<b>&amp;</b>" not in html and "&lt;b&gt;&amp;&lt;/b&gt;" in html
    assert 'href="https://x/?a=1&amp;b=2"' in html
    blocks = slack_blocks(summarize(envelope))
    assert blocks[1]["text"]["text"] == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert blocks[-1]["elements"][0]["text"] == "<https://x/?a=1&b=2|&lt;run&gt;>"
    assert "Links:\n  <run>: https://x/?a=1&b=2" in render_text(summarize(envelope))


def test_slack_fields_beyond_ten_go_to_a_context_line():
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type="t",
        event_message="m",
        log_level="error",
        event_time=1,
        context_app_version="1",
        deployment_stage="s",
        context_env_hostname="h",
        event_user="u",
        context_url="https://u",
    )
    envelope = Envelope(event=event, logger_name="l", tags={"a": "b"})
    blocks = slack_blocks(summarize(envelope, app_name="app"))
    fields = next(b for b in blocks if "fields" in b)["fields"]
    assert len(fields) == 10
    context = [b for b in blocks if b["type"] == "context"]
    assert "*Tags*: a:b" in context[0]["elements"][0]["text"]
