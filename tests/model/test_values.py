"""to_json_safe: the quick copy of a flat ``extra`` dict gives what the full treatment gives."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import pathlib
import uuid

import pytest

from alertkit.model.values import MAX_STRING, KnownObjects, carried_over, to_json_safe

FLAT_CASES = [
    {"i": 1, "s": "x", "f": 1.5, "n": None, "b": True},
    {"big": 1 << 70},
    {"nan": float("nan"), "inf": float("-inf")},
    {"long": "y" * (MAX_STRING + 10)},
    {"lone surrogate": "a\udc80b", "accent": "café"},
    {3: "non-string key", ("t",): 1},
    {"k" * 300: "long key"},
    {"obj": object.__new__(type("Odd", (), {"__repr__": lambda self: "<odd>"}))},
]


@pytest.mark.parametrize("value", FLAT_CASES, ids=range(len(FLAT_CASES)))
def test_flat_dicts_come_out_as_the_thorough_path_makes_them(value):
    quick = to_json_safe(value)
    thorough = to_json_safe({"wrapped": value})["wrapped"]  # nested: never the quick path
    assert quick == thorough or repr(quick) == repr(thorough)  # nan != nan
    assert quick is not value, "a copy: later changes by the application do not leak in"


class Markup(str):
    """Stands in for ``markupsafe.Markup``: a str subclass that JSON encoders refuse."""


class Color(enum.Enum):
    RED = "red"
    NESTED = (1, 2)


class Level(enum.IntEnum):
    HIGH = 3


class Weight(float):
    pass


WHEN = datetime.datetime(2024, 1, 1, 12, 30, 5, 250, tzinfo=datetime.timezone.utc)
MEANINGS: list[tuple[object, object]] = [
    (WHEN, "2024-01-01T12:30:05.000250+00:00"),
    (datetime.datetime(2024, 1, 1), "2024-01-01T00:00:00"),
    (datetime.date(2024, 2, 29), "2024-02-29"),
    (datetime.time(23, 59, 1), "23:59:01"),
    (decimal.Decimal("1.10"), "1.10"),
    (decimal.Decimal("-1E+30"), "-1E+30"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (pathlib.PurePosixPath("/var/log/app.log"), "/var/log/app.log"),
    (Color.RED, "red"),
    (Color.NESTED, [1, 2]),
    (Level.HIGH, 3),
    (1 << 132, str(1 << 132)),
    (1 << 30_000, "<int of 30001 bits>"),
    (Markup("<b>bold</b>"), "<b>bold</b>"),
    (Weight(0.5), 0.5),
]


@pytest.mark.parametrize(("value", "expected"), MEANINGS, ids=range(len(MEANINGS)))
def test_values_keep_their_meaning(value, expected):
    """Dates as ISO 8601, decimals as their digits, UUIDs and paths as text, enums as their
    value, wide integers as their digits: never the repr of a Python object."""
    out = to_json_safe({"nested": {"v": value}})["nested"]["v"]
    assert out == expected
    assert type(out) in (str, int, float, list), "a plain wire type, which any encoder takes"
    assert json.loads(json.dumps(out)) == out


def test_a_wide_integer_past_the_digits_str_prints_is_printed_in_full():
    value = 7**6000  # 5071 digits: str() refuses past 4300 by default
    with pytest.raises(ValueError):
        str(value)
    text = to_json_safe([-value])[0]
    assert len(text) == 1 + 5071 and text.startswith("-")
    assert text[1:11] == str(value // 10**5061) and text[-10:] == str(value % 10**10).zfill(10)


def test_a_value_whose_type_checks_raise_becomes_its_repr():
    class Hostile:
        def __getattribute__(self, name: str) -> object:
            raise RuntimeError("no attributes")

        def __repr__(self) -> str:
            return "<hostile>"

    assert to_json_safe({"h": [Hostile()]}) == {"h": ["<hostile>"]}


# -- objects known by identity (the breadcrumb memos) ---------------------------------------------


class _NoCompare:
    """An object that fails any comparison: identity must be all the memos ever use."""

    def __eq__(self, other: object) -> bool:
        raise AssertionError("compared with ==")

    __hash__ = object.__hash__


def test_carried_over_counts_the_shared_run_by_identity_only():
    items = [_NoCompare() for _ in range(8)]
    last = tuple(items[:6])
    assert carried_over(last, tuple(items[1:7])) == 5  # one crumb more, one fewer
    assert carried_over(last, tuple(items[3:8])) == 3
    assert carried_over(last, tuple(items[:6])) == 6
    assert carried_over(last, (items[1], items[3])) == 0, "a gap is not a carry-over"
    assert carried_over(last, (_NoCompare(), *items[1:6])) == 0
    assert carried_over((), tuple(items)) == 0
    assert carried_over(last, ()) == 0


def test_known_objects_look_up_only_what_the_last_settled_run_did_not_hold():
    crumbs = [{"n": i} for i in range(10)]
    known = KnownObjects(size=4)
    assert known.unknown(crumbs[:3]) == crumbs[:3]
    for crumb in crumbs[:3]:
        known.add(crumb)
    known.settled(tuple(crumbs[:3]))
    assert known.unknown(tuple(crumbs[1:4])) == [crumbs[3]]
    assert known.unknown([{"n": 1}]) == [{"n": 1}], "an equal dict is not the same crumb"
    for crumb in crumbs[3:6]:
        known.add(crumb)  # holds four: the oldest two are forgotten
    assert crumbs[0] not in known and crumbs[1] not in known and crumbs[5] in known
