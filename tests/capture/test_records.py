"""Which attributes of a log record are its ``extra`` fields (read once per record shape)."""

from __future__ import annotations

import logging

from alertkit.capture.records import extra_dict, extra_fields, extra_items


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


def test_shapes_of_one_size_are_told_apart_by_their_names() -> None:
    """Two call sites whose records have as many attributes but other extra names: each record
    gets its own fields, however they alternate."""
    for round_ in range(3):
        assert extra_fields(_record({"order": round_, "region": "eu"}).__dict__) == {
            "order": round_,
            "region": "eu",
        }
        assert extra_fields(_record({"user": "u", "region": "us"}).__dict__) == {
            "user": "u",
            "region": "us",
        }
        assert extra_fields(_record({"sku": round_}).__dict__) == {"sku": round_}


def test_values_are_read_when_the_record_is_seen() -> None:
    """extra_items reads the values at once: a change to the record afterwards is not in them."""
    record = _record({"order": 7, "tags": {"a": "b"}})
    items = extra_items(record.__dict__)
    record.order = 8  # type: ignore[attr-defined]
    assert extra_dict(*items) == {"order": 7, "tags": {"a": "b"}}


def test_a_record_missing_a_plain_attribute_still_gives_its_extra_fields() -> None:
    """A record an application changed by hand (a plain attribute deleted): its shape is not
    cached, and its extra fields are found by name. (One that also gained as many attributes as
    it lost may be taken for a known shape of its size: see extra_items.)"""
    fields = {f"f{i}": i for i in range(6)}
    record = _record(fields)
    del record.processName
    assert extra_fields(record.__dict__) == fields
    assert extra_fields(_record(fields).__dict__) == fields
