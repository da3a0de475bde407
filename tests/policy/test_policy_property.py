"""The policy stage's promise, whatever path the code takes: what leaves the scrubber and the
limits is within the limits and holds none of the secrets put in.

Each generated event hides secrets in every place the scrubber covers (secret keys at any depth,
``key=value`` text, URLs, headers, tags, links) among filler of generated sizes, some within the
limits and some beyond them, and arrives either as the application made it or as the capture
made it (``to_json_safe``): so the "nothing to change, same object" path and the copying path
both run, and must agree on the promise.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_path
from hypothesis import strategies as st

from alertkit.model.event import AppEvent, Envelope, decode_event, encode_event
from alertkit.model.values import to_json_safe
from alertkit.policy.limits import MAX_NAME, Limits
from alertkit.policy.scrub import default_processors
from tests.test_bad_input import MARKER_ROOM, check_bounded

LIMITS = Limits(
    max_string=120, max_message=300, max_items=12, max_depth=4, max_total=3000, max_exceptions=3
)
PROCESSORS = default_processors(limits=LIMITS)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

secrets = st.text(alphabet="abcdefghijkmnpqrstuvwxyz23456789", min_size=10, max_size=16).map(
    lambda body: f"Zq{body}"  # a prefix no filler or marker contains
)
secret_keys = st.sampled_from(["password", "api_key", "X-Auth-Token", "sessionId", "db_passwd"])
filler = st.text(alphabet="abc xyz.,-é", max_size=200)
plain_keys = st.sampled_from(["user", "order", "note", "path", "step"])


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[Envelope, list[str]]:
    """An envelope with secrets hidden in every place the scrubber covers, and those secrets."""
    hidden = [draw(secrets) for _ in range(7)]
    key = draw(secret_keys)
    nested: Any = {key: hidden[0]}
    for _ in range(draw(st.integers(0, 6))):  # sometimes deeper than max_depth
        nested = {draw(plain_keys): nested}
    details: dict[str, Any] = {
        draw(secret_keys): hidden[1],
        "note": draw(filler) + f" {draw(secret_keys)}={hidden[2]} " + draw(filler),
        "nested": nested,
        "items": draw(st.lists(filler, max_size=20)),
    }
    for name in draw(st.lists(plain_keys, max_size=5)):
        details[name] = draw(st.one_of(filler, st.integers(), st.floats(), st.none()))
    if draw(st.booleans()):
        details = to_json_safe(details)  # as the capture makes it
    message = draw(filler) + f" https://u:{hidden[3]}@db.example/x " + draw(filler)
    event = AppEvent(api_key="k", classification="issue", event_type="t", event_message=message)
    envelope = Envelope(
        event=event,
        event_id="e1",  # not the random default: a strategy draws everything it varies
        created=0.0,
        details=details,
        template=draw(st.sampled_from(["failed %s", "login with password=%s"])),
        exc_text=draw(filler) + f"\nAuthorization: Bearer {hidden[4]}\n",
        tags={"region": draw(filler), "api-key": hidden[5]},
        links=[{"href": f"https://cb.example/hook?token={hidden[6]}", "text": draw(filler)}],
    )
    return envelope, hidden


def through_policy(envelope: Envelope) -> Envelope:
    out: Envelope | None = envelope
    for processor in PROCESSORS:
        assert out is not None
        out = processor(out)
    assert out is not None
    return out


@SETTINGS
@given(case=envelopes())
def test_what_leaves_the_policy_stage_is_bounded_and_holds_no_secret(internal_errors, case):
    """Within every limit, encodable as the wire model, and none of the generated secrets
    anywhere in it, whether the processors copied the envelope or passed it on."""
    envelope, hidden = case
    out = through_policy(envelope)
    note_path("passed as is" if out is envelope else "copied")
    decode_event(encode_event(out.event))
    assert len(out.event.event_message) <= LIMITS.max_message + MARKER_ROOM
    assert all(len(tag) <= MAX_NAME + MARKER_ROOM for tag in out.event.context_tags or ())
    for text in (out.template, out.exc_text):
        assert text is None or len(text) <= LIMITS.max_message + MARKER_ROOM
    check_bounded(out.details, 0, LIMITS)
    assert len(json.dumps(out.details, allow_nan=False)) <= 2 * LIMITS.max_total
    check_bounded(dict(out.tags), 0, LIMITS)
    for link in out.links:
        check_bounded(dict(link), 0, LIMITS)
    everything = json.dumps(
        [
            encode_event(out.event).decode(),
            out.details,
            out.tags,
            list(out.links),
            out.template,
            out.exc_text,
        ],
        allow_nan=False,
    )
    assert not [secret for secret in hidden if secret in everything]
    assert not internal_errors


@SETTINGS
@given(case=envelopes())
def test_a_second_pass_changes_nothing(case):
    """The transforms are fixed points: what left the policy stage passes it again as the very
    same object, so the "nothing to change" path and the copying path agree on what fits."""
    envelope, _ = case
    once = through_policy(envelope)
    assert through_policy(once) is once
