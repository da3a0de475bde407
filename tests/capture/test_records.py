"""Which attributes of a log record are its ``extra`` fields (read once per record shape)."""

from __future__ import annotations

import logging

from alertkit.capture.records import extra_fields


def _record(extra: dict[str, object] | None = None) -> logging.LogRecord:
    return logging.getLogger("tests.records").makeRecord(
        "tests.records", logging.ERROR, "f.py", 1, "m", (), None, extra=extra
    )


def test_records_of_one_shape_give_each_their_own_values_in_order() -> None:
    """The keys found for a shape are reused; the values are always the record's own."""
    assert extra_fields(_record({"b": 1, "a": [1]}).__dict__) == {"b": 1, "a": [1]}
    second = extra_fields(_record({"b": 2, "a": "x"}).__dict__)
    assert second == {"b": 2, "a": "x"} and list(second) == ["b", "a"]


def test_plain_private_and_later_attributes() -> None:
    """No extra: None; underscored names are left out; an attribute a filter added counts."""
    assert extra_fields(_record().__dict__) is None
    assert extra_fields(_record({"_hidden": 1}).__dict__) is None
    record = _record({"order": 7})
    record.request_id = "r-1"  # type: ignore[attr-defined]
    record.message = "m"  # a formatter's own attribute
    assert extra_fields(record.__dict__) == {"order": 7, "request_id": "r-1"}
