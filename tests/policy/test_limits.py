"""The Limits processor: every string and collection bounded, with a marker where it cut."""

from __future__ import annotations

import json

import msgspec
import pytest

from alertkit.model.event import (
    AppEvent,
    CustomData,
    CustomDoubleData,
    CustomStringData,
    Envelope,
    InnerStackTrace,
    StackTraceLine,
    decode_event,
    encode_event,
)
from alertkit.model.values import clip, to_json_safe
from alertkit.policy.limits import Limits
from tests.model.test_values import MEANINGS


def make_event(**fields: object) -> AppEvent:
    base: dict[str, object] = {
        "api_key": "KEY",
        "classification": "issue",
        "event_type": "t",
        "event_message": "m",
    }
    return AppEvent(**{**base, **fields})  # type: ignore[arg-type]


def test_strings_are_cut_with_a_marker_saying_how_much():
    limits = Limits(max_string=10, max_message=20)
    out = limits(
        Envelope(
            event=make_event(event_message="m" * 50, event_user="u" * 15),
            details={"s": "d" * 12},
            exc_text="e" * 25,
            template="t" * 21,
        )
    )
    assert out is not None
    assert out.event.event_message == "m" * 20 + "...[cut 30 chars]"
    assert out.event.event_user == "u" * 10 + "...[cut 5 chars]"
    assert out.details == {"s": "d" * 10 + "...[cut 2 chars]"}
    assert out.exc_text == "e" * 20 + "...[cut 5 chars]"
    assert out.template == "t" * 20 + "...[cut 1 chars]"


def test_cutting_twice_keeps_one_marker_with_the_total_count():
    once = clip("x" * 100, 50)
    assert clip(once, 10) == "x" * 10 + "...[cut 90 chars]"


def test_collections_keep_max_items_and_say_how_many_were_cut():
    limits = Limits(max_items=3)
    data = limits.data({"list": list(range(10)), "map": {str(i): i for i in range(5)}})
    assert data == {
        "list": [0, 1, 2, "[7 more items cut]"],
        "map": {"0": 0, "1": 1, "2": 2, "...": "[2 more items cut]"},
    }


def test_depth_is_bounded_with_a_marker():
    deep: list[object] = ["leaf"]
    for _ in range(10_000):
        deep = [deep]
    out = Limits(max_depth=3).data({"d": deep})
    assert out == {"d": [["[nested deeper than 3 levels: cut]"]]}


def test_total_size_of_details_is_bounded():
    limits = Limits(max_string=100, max_total=250)
    data = limits.data({f"k{i}": "v" * 100 for i in range(10)})
    text = json.dumps(data)
    assert len(text) < 600
    assert data["..."].endswith("more items cut]")


def test_cycles_bytes_odd_numbers_and_objects_become_json_safe():
    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("nope")

    cyclic: dict[str, object] = {}
    cyclic["me"] = cyclic
    data = Limits().data(
        {
            "cyclic": cyclic,
            "bytes": b"\xff\xfeab",
            "nan": float("nan"),
            "inf": float("-inf"),
            "big": 1 << 80,
            "surrogate": "a\udc80b",
            "loud": Loud(),
            "set": {1},
            (1, 2): "tuple key",
        }
    )
    assert data["cyclic"] == {"me": "<cycle>"}
    assert data["nan"] == "nan" and data["inf"] == "-inf"
    assert data["big"] == str(1 << 80), "a wide integer keeps its digits"
    assert data["surrogate"] == "a?b"
    assert data["loud"] == "<unrepresentable Loud>"
    assert data["set"] == [1]
    assert data["(1, 2)"] == "tuple key"
    json.dumps(data, allow_nan=False)


def test_stack_traces_keep_oldest_and_newest_frames_and_ten_exceptions():
    frames = [StackTraceLine(function=f"f{i}", line=i, file="x.py") for i in range(250)]
    stack = [InnerStackTrace(type=f"E{i}", message="m", trace_lines=frames) for i in range(15)]
    out = Limits(max_frames=100, max_exceptions=10).event(make_event(event_stacktrace=stack))
    assert out.event_stacktrace is not None
    assert len(out.event_stacktrace) == 11
    assert out.event_stacktrace[-1] == InnerStackTrace(
        type="[cut]", message="[5 more exceptions cut]"
    )
    lines = out.event_stacktrace[0].trace_lines
    assert lines is not None and len(lines) == 101
    assert [line.function for line in lines[49:52]] == ["f49", "[150 frames cut]", "f200"]
    assert lines[-1].function == "f249"


def test_wire_fields_get_their_declared_types():
    event = make_event(
        event_message=123,
        event_type=None,
        log_level="loud",
        event_time=1 << 70,
        context_tags=["a", 5, "b\udc80"],
        context_cpu_percentage=float("nan"),
        context_operation_time_millis=True,
        custom_properties=CustomData(
            string_data=CustomStringData(custom_data1=object()),  # type: ignore[arg-type]
            double_data=CustomDoubleData(custom_data1=float("inf"), custom_data2=2),
        ),
        custom_segments="not custom data",
    )
    out = Limits().event(event)
    decoded = decode_event(encode_event(out))  # validates every field's type
    assert decoded.event_message == "123"
    assert decoded.event_type == "None"
    assert decoded.log_level is None
    assert decoded.event_time is None
    assert decoded.context_tags == ["a", "5", "b?"]
    assert decoded.context_cpu_percentage is None
    assert decoded.context_operation_time_millis is None
    assert decoded.custom_properties is not None
    assert decoded.custom_properties.double_data == CustomDoubleData(custom_data2=2.0)
    assert decoded.custom_segments is None


def test_envelope_fields_are_made_well_typed():
    envelope = Envelope(
        event=make_event(),
        details="not a dict",  # type: ignore[arg-type]
        tags={"k": 1, 2: "v"},  # type: ignore[dict-item]
        links=[{"href": "h", "text": 3}, "junk"],  # type: ignore[list-item]
        payload={"x": b"bytes"},
    )
    out = Limits()(envelope)
    assert out is not None
    assert out.details == {"data": "not a dict"}
    assert out.tags == {"k": "1", "2": "v"}
    assert out.links == [{"href": "h", "text": "3"}]
    assert out.payload == {"x": "bytes"}


def test_breadcrumbs_keep_the_most_recent_and_fingerprints_are_bounded_strings():
    crumbs = [{"message": f"step {i}", "data": {"blob": "x" * 20_000}} for i in range(150)]
    envelope = Envelope(
        event=make_event(),
        breadcrumbs=crumbs,
        fingerprint=["db-timeout", 42, "y" * 50_000],  # type: ignore[list-item]
        trace_id="a" * 300,
    )
    out = Limits(max_items=100)(envelope)
    assert out is not None
    assert [c["message"] for c in out.breadcrumbs] == [f"step {i}" for i in range(50, 150)]
    assert all(len(c["data"]["blob"]) < 20_000 for c in out.breadcrumbs)
    assert out.fingerprint is not None and out.fingerprint[:2] == ["db-timeout", "42"]
    assert len(out.fingerprint[2]) < 50_000
    assert out.trace_id is not None and len(out.trace_id) < 300
    same = Envelope(event=make_event(), breadcrumbs=[{"message": "m"}], fingerprint=["a"])
    assert Limits()(same) is same


def test_an_envelope_without_a_wire_event_is_dropped():
    assert Limits()(Envelope(event="nope")) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("max_string", 0, ValueError),
        ("max_items", "5", TypeError),
        ("max_depth", 101, ValueError),
        ("max_frames", True, TypeError),
    ],
)
def test_bad_limits_are_rejected_with_the_option_named(option, value, error):
    with pytest.raises(error, match=option):
        Limits(**{option: value})


def test_defaults_encode_a_huge_event_within_a_megabyte():
    huge = "x" * (10 << 20)
    frames = [StackTraceLine(function=huge, line=1, file=huge)] * 500
    event = make_event(
        event_message=huge,
        event_stacktrace=[InnerStackTrace(type=huge, message=huge, trace_lines=frames)] * 50,
        context_tags=[huge] * 500,
    )
    out = Limits()(Envelope(event=event, details={"a": [huge] * 500}, exc_text=huge))
    assert out is not None
    assert len(encode_event(out.event)) < 2 << 20
    assert len(json.dumps(out.details)) < 300 * 1024
    assert msgspec.json.decode(encode_event(out.event))["eventMessage"].endswith("chars]")


def test_an_event_within_the_limits_is_returned_as_is_and_a_cut_one_is_a_copy():
    frames = [StackTraceLine(function="f", line=1, file="x.py")]
    event = make_event(
        context_tags=["prod"],
        event_stacktrace=[InnerStackTrace(type="E", message="m", trace_lines=frames)],
        custom_properties=CustomData(string_data=CustomStringData(custom_data1="c")),
    )
    limits = Limits(max_string=5)
    assert limits.event(event) is event
    event.event_stacktrace[0].message = "m" * 6  # type: ignore[index]
    cut = limits.event(event)
    assert cut is not event
    assert cut.event_stacktrace[0].message == "mmmmm...[cut 1 chars]"  # type: ignore[index]
    assert event.event_stacktrace[0].message == "m" * 6  # type: ignore[index]
    assert cut.event_stacktrace[0].trace_lines is frames  # type: ignore[index]


@pytest.mark.allow_internal_errors
def test_when_fitting_fails_the_bare_event_still_goes_out(monkeypatch, internal_errors):
    limits = Limits()

    def broken(value: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(limits, "_dict", broken)
    envelope = Envelope(event=make_event(event_message="m" * 40_000), details={"a": 1}, kind="x")
    out = limits(envelope)
    assert out is not None
    assert out.kind == "x" and out.event_id == envelope.event_id and out.details == {}
    assert out.event.event_message.endswith("...[cut 7232 chars]")
    assert [str(error) for error in internal_errors] == ["bug"]


def test_the_quick_check_still_sees_one_long_field_among_short_ones():
    """The fast path skips the field walk when the whole encoded event is shorter than the
    limits; a single over-long field (not the message) must still send it to the cutting path."""
    limits = Limits(max_string=50, max_message=100)
    short = Envelope(event=make_event(context_url="u" * 40), details={"n": 1, "s": "x" * 40})
    assert limits(short) is short
    long_url = Envelope(event=make_event(context_url="u" * 60))
    out = limits(long_url)
    assert out is not None and out is not long_url
    assert out.event.context_url == "u" * 50 + "...[cut 10 chars]"
    long_detail = Envelope(event=make_event(), details={"n": 1, "s": "x" * 60})
    out = limits(long_detail)
    assert out is not None and out.details["s"] == "x" * 50 + "...[cut 10 chars]"


@pytest.mark.parametrize(
    "changes",
    [{"tags": None}, {"links": None}, {"images": {}}, {"details": {"nan": float("nan")}}],
    ids=["tags", "links", "images", "nan"],
)
def test_mistyped_side_fields_are_made_well_typed(changes):
    """A side field the application set to the wrong type comes out of its declared type."""
    envelope = Envelope(event=make_event())
    for name, value in changes.items():
        setattr(envelope, name, value)
    out = Limits()(envelope)
    assert out is not None and out is not envelope
    assert type(out.tags) is dict and type(out.links) in (list, tuple)
    assert type(out.images) in (list, tuple)
    json.dumps(out.details, allow_nan=False)


@pytest.mark.parametrize(
    ("details", "cut"),
    [
        ({"n": 1, "s": "x" * 40}, None),
        ({"s": "x" * 60}, {"s": "x" * 50 + "...[cut 10 chars]"}),
        ({f"k{i}": i for i in range(5)}, {"k0": 0, "k1": 1, "k2": 2, "...": "[2 more items cut]"}),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": "[nested deeper than 2 levels: cut]"}}),
        ({"é": "ü"}, None),
    ],
    ids=["within", "long-string", "many-items", "deep", "non-ascii"],
)
def test_the_envelope_passes_as_is_exactly_when_nothing_needs_cutting(details, cut):
    """One transform: the very same envelope when its details are within the limits, else a
    copy cut with the markers (non-ASCII text is checked, not cut)."""
    limits = Limits(max_string=50, max_items=3, max_depth=2)
    envelope = Envelope(event=make_event(), details=details)
    out = limits(envelope)
    assert out is not None and out.details == (details if cut is None else cut)
    assert (out is envelope) == (cut is None)


def test_details_and_payload_each_use_up_their_own_total_budget():
    """``max_total`` bounds ``details`` and ``payload`` each on its own: the envelope passes as
    is exactly when each fits (its key and its string), and is cut otherwise."""
    details, payload = {"d": "x" * 300}, {"p": "y" * 300}
    passed = set()
    for max_total in range(100, 600, 25):
        envelope = Envelope(event=make_event(), details=details, payload=payload)
        out = Limits(max_total=max_total)(envelope)
        assert out is not None
        fits = max_total >= 1 + 300
        assert (out is envelope) == fits, max_total
        for part in (out.details, out.payload):
            assert part is not None and len(json.dumps(part)) <= max_total + 40
        passed.add(fits)
    assert passed == {True, False}  # the range crosses the point where they stop fitting


class Markup(str):
    """Stands in for ``markupsafe.Markup``: a str subclass that JSON encoders refuse."""


def test_a_list_cut_at_capture_says_how_many_were_really_cut():
    """The capture cuts 100,000 items to 100 and a marker; the limits cut the marker off, and
    the one marker left counts both cuts."""
    captured = to_json_safe({"items": list(range(100_000)), "map": {i: i for i in range(500)}})
    out = Limits()(Envelope(event=make_event(), details=captured))
    assert out is not None
    assert out.details["items"] == [*range(100), "[99900 more items cut]"]
    assert out.details["map"]["..."] == "[400 more items cut]" and len(out.details["map"]) == 101
    smaller = Limits(max_items=10)(Envelope(event=make_event(), details=captured))
    assert smaller is not None
    assert smaller.details["items"][-1] == "[99990 more items cut]"
    assert smaller.details["map"]["..."] == "[490 more items cut]"


def test_str_subclasses_become_plain_strings_everywhere():
    """``markupsafe.Markup`` passes every length check, but no JSON encoder takes it."""
    envelope = Envelope(
        event=make_event(
            event_type=Markup("Type"),
            event_message=Markup("<b>bold</b>"),
            event_user=Markup("u"),
            context_tags=[Markup("t")],
            log_level=Markup("warning"),
        ),
        details={Markup("key"): Markup("value"), "list": [Markup("x")]},
        tags={Markup("k"): Markup("v")},
        template=Markup("tpl"),
    )
    out = Limits()(envelope)
    assert out is not None
    event = out.event
    assert json.loads(encode_event(event)) == {
        **json.loads(encode_event(make_event())),
        "eventType": "Type",
        "eventMessage": "<b>bold</b>",
        "eventUser": "u",
        "contextTags": ["t"],
        "logLevel": "warning",
    }
    msgspec.json.encode([out.details, out.tags, out.template])  # raises on a subclass
    assert [type(k) for k in out.details] == [str, str] and type(out.template) is str


class BadEq:
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = object.__hash__


@pytest.mark.parametrize("level", [["error"], BadEq(), {"error"}, 3, "loud"])
def test_a_log_level_of_the_wrong_type_is_left_out(level):
    out = Limits()(Envelope(event=make_event(log_level=level)))
    assert out is not None and out.event.log_level is None
    decode_event(encode_event(out.event))


@pytest.mark.parametrize(("value", "expected"), MEANINGS, ids=range(len(MEANINGS)))
def test_values_keep_their_meaning_in_details_a_processor_set(value, expected):
    """The limits convert as the capture does (one rule: ``_safe.plain_scalar``)."""
    out = Limits()(Envelope(event=make_event(), details={"v": value, "in": [value]}))
    assert out is not None and out.details == {"v": expected, "in": [expected]}


def test_a_str_subclass_message_is_made_a_plain_str():
    """A message made by ``Markup("%s") % args`` (still a Markup) passes every length check
    but no encoder takes it: the limits copy the envelope with plain strings."""
    envelope = Envelope(
        event=make_event(event_message=Markup("<b>%s</b>") % "x"),
        template=Markup("<b>%s</b>"),
        details={"k": "v"},
    )
    out = Limits()(envelope)
    assert out is not None and out is not envelope
    assert type(out.event.event_message) is str and type(out.template) is str
    encode_event(out.event)
