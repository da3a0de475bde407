"""to_json_safe: the quick copy of a flat ``extra`` dict gives what the full treatment gives."""

from __future__ import annotations

import pytest

from alertkit._safe import MAX_STRING, to_json_safe

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
