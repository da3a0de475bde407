"""Exceptions as text and as wire stack traces, checked against the standard library's own."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator

import pytest

from alertkit.model.stacktrace import ExcInfo, build_stacktrace, format_exception_text


def _recurse(depth: int) -> float:
    if depth == 0:
        return 1 / 0
    return _recurse(depth - 1)


def _caught(make: object) -> ExcInfo:
    try:
        make()  # type: ignore[operator]
    except BaseException:
        info = sys.exc_info()
        assert info[0] is not None and info[1] is not None
        return (info[0], info[1], info[2])
    raise AssertionError("no exception")


def _cause() -> None:
    try:
        {}["key"]
    except KeyError as exc:
        raise ValueError("bad order") from exc


def _context() -> None:
    try:
        int("x")
    except ValueError:
        empty: list[int] = []
        print(empty[1])


def _suppressed() -> None:
    try:
        int("x")
    except ValueError:
        raise TypeError("replaced") from None


def _cases() -> Iterator[tuple[str, ExcInfo]]:
    yield "recursion", _caught(lambda: _recurse(25))
    yield "cause", _caught(_cause)
    yield "context", _caught(_context)
    yield "suppressed", _caught(_suppressed)
    bare = ValueError("never raised")
    yield "no traceback", (ValueError, bare, None)


@pytest.mark.parametrize(("name", "info"), list(_cases()), ids=[n for n, _ in _cases()])
def test_text_is_what_python_prints(name: str, info: ExcInfo) -> None:
    """Exactly the text of ``traceback`` and of ``logging.Formatter.formatException``, the
    column markers of Python 3.11+ (``~~^~~``) included."""
    expected = "".join(traceback.format_exception(*info, limit=50)).rstrip()
    assert format_exception_text(info) == expected
    assert format_exception_text(info) == logging.Formatter().formatException(info)


def test_a_place_seen_before_gives_the_same_text() -> None:
    """Frame texts are cached per place in the code: the second exception through the same
    places (other values, other message) must still read exactly as Python prints it."""
    texts = []
    for order in (1, 2, 3, 1):
        info = _caught(lambda order=order: _fail_order(order))
        texts.append(format_exception_text(info))
        assert texts[-1] == logging.Formatter().formatException(info)
    assert texts[0].endswith("ValueError: invalid literal for int() with base 10: 'order 1 failed'")
    assert texts[1].endswith("ZeroDivisionError: division by zero")
    assert texts[2].endswith("KeyError: 'missing'")
    assert texts[3] == texts[0]


def _fail_order(order: int) -> None:
    total = {"a": 1}
    print(
        total["missing"] if order > 2 else order / 0 if order > 1 else int(f"order {order} failed")
    )


def test_deep_recursion_is_summarised_as_python_does() -> None:
    text = format_exception_text(_caught(lambda: _recurse(25)))
    assert "[Previous line repeated 22 more times]" in text
    assert text.count("in _recurse") == 3 + 1  # three repeats, then the frame that raised


def test_wire_frames_are_the_tracebacks_frames() -> None:
    info = _caught(_cause)
    entries = build_stacktrace(info[1])
    assert [e.type for e in entries] == ["ValueError", "KeyError"]
    for entry, exc in zip(entries, (info[1], info[1].__cause__), strict=True):
        assert exc is not None
        expected = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(exc.__traceback__)]
        assert [(f.file, f.line, f.function) for f in entry.trace_lines or []] == expected


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("message"),
        ValueError(),
        _Unprintable(),
        KeyError("k"),
        SyntaxError("bad", ("f.py", 1, 2, "a b")),
    ],
    ids=["message", "empty", "unprintable", "key", "syntax"],
)
def test_the_exception_line_is_pythons(exc: BaseException) -> None:
    info: ExcInfo = (type(exc), exc, None)
    assert (
        format_exception_text(info)
        == "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    )


def test_source_lines_of_zipped_code_are_found_as_python_finds_them(tmp_path, monkeypatch) -> None:
    """Code imported from a zip has no file to read: its loader gives the source, as it does
    for ``traceback``."""
    import importlib
    import zipfile

    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped_app.py", 'def boom():\n    raise ValueError("from the zip")\n')
    monkeypatch.syspath_prepend(str(archive))
    module = importlib.import_module("zipped_app")
    try:
        info = _caught(module.boom)
    finally:
        sys.modules.pop("zipped_app", None)
    assert 'raise ValueError("from the zip")' in format_exception_text(info)
    assert "zipped_app.py" in format_exception_text(info)
