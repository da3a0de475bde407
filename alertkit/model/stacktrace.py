"""Exceptions into the event model: qualified type names and one stack entry per chained exception."""

from __future__ import annotations

import builtins
import sys
import traceback
from collections.abc import Iterator
from types import CodeType, TracebackType
from typing import Any

from alertkit.model.event import InnerStackTrace, StackTraceLine

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_MAX_CHAIN = 10
_MAX_TEXT_FRAMES = 50
#: One traceback entry: file, line (None for code without line numbers), function.
_Frame = tuple[str, int | None, str]


def exception_type_name(exc_type: type[BaseException]) -> str:
    """``ZeroDivisionError`` for builtins, ``myapp.errors.PaymentDeclined`` for everything else."""
    module = getattr(exc_type, "__module__", None)
    qualname = getattr(exc_type, "__qualname__", exc_type.__name__)
    if not module or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


def resolve_exc_info(exc_info: Any) -> ExcInfo | None:
    """Normalise ``exc_info`` as logging does: True reads the active exception, a tuple or an
    exception instance is used as is, anything falsy means none."""
    if not exc_info:
        return None
    if isinstance(exc_info, BaseException):
        return (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        return exc_info
    current = sys.exc_info()
    if current[1] is None:
        return None
    return current


def safe_str(value: object) -> str:
    """``str(value)``, or a marker when ``__str__`` raises."""
    try:
        return str(value)
    except Exception:
        try:
            return f"<unprintable {type(value).__name__}>"
        except Exception:
            return "<unprintable>"


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception, then what it was raised from or during, following ``__cause__``/``__context__``."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return chain


def build_stacktrace(exc: BaseException, tb: TracebackType | None = None) -> list[InnerStackTrace]:
    """One ``InnerStackTrace`` per exception in the chain, frames oldest first.

    ``tb``: the traceback of ``exc`` itself when it is known apart from ``exc.__traceback__``
    (an exc_info tuple kept after a framework cleared the exception's own, as
    :func:`format_exception_text` reads it).
    """
    entries = []
    for index, item in enumerate(exception_chain(exc)):
        trace = tb if index == 0 and tb is not None else item.__traceback__
        lines = [
            StackTraceLine(function=name, line=lineno or 0, file=filename)
            for (filename, lineno, name), _ in _walk(trace)
        ]
        entries.append(
            InnerStackTrace(
                type=exception_type_name(type(item)), message=safe_str(item), trace_lines=lines
            )
        )
    return entries


def _walk(
    tb: TracebackType | None, limit: int | None = None
) -> Iterator[tuple[_Frame, TracebackType]]:
    """``(file, line, function)`` of each frame of ``tb`` with its traceback entry, outermost
    first (at most ``limit``).

    Read from the traceback itself: ``traceback.extract_tb`` also looks up every source line and,
    from Python 3.11 on, every frame's column positions, which the wire stack trace does not need.
    """
    shown = 0
    while tb is not None and (limit is None or shown < limit):
        code = tb.tb_frame.f_code
        yield (code.co_filename, tb.tb_lineno, code.co_name), tb
        tb, shown = tb.tb_next, shown + 1


def format_exception_text(exc_info: ExcInfo) -> str:
    """The traceback exactly as Python prints it (``logging.Formatter.formatException``),
    chained exceptions included, at most ``_MAX_TEXT_FRAMES`` frames per traceback.

    Assembled here rather than by ``traceback.format_exception``, which from Python 3.11 on
    finds every frame's column positions and compiles its source line for the ``^^^^``
    markers: most of the cost of an exception event (about 0.5 ms for ten frames). Each frame's
    text is made by ``traceback`` once per place in the code (see :func:`_frame_text`).
    Exception groups, rare and nested, are left to ``traceback`` whole.
    """
    exc = exc_info[1]
    try:
        if _is_group(exc):
            return "".join(traceback.format_exception(*exc_info, limit=_MAX_TEXT_FRAMES)).rstrip()
        chain = exception_chain(exc)
        parts: list[str] = []
        for index in range(len(chain) - 1, -1, -1):  # the first cause first, as Python prints
            item = chain[index]
            tb = exc_info[2] if index == 0 else item.__traceback__
            if tb is not None:
                parts.append("Traceback (most recent call last):\n")
                parts.extend(_frame_lines(tb))
            parts.append(_exception_line(item))
            if index:
                parts.append(_CAUSE if chain[index - 1].__cause__ is item else _CONTEXT)
        return "".join(parts).rstrip()
    except Exception:
        return f"{exception_type_name(exc_info[0])}: {safe_str(exc)}"


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
#: As in ``traceback``: a frame repeated more often than this is summarised (deep recursion).
_RECURSIVE_CUTOFF = 3


def _frame_lines(tb: TracebackType | None) -> list[str]:
    """The text of each frame of ``tb`` (at most ``_MAX_TEXT_FRAMES``), with deep recursion
    summarised as ``traceback`` does."""
    lines: list[str] = []
    last: _Frame | None = None
    repeated = 0
    for entry, node in _walk(tb, _MAX_TEXT_FRAMES):
        if entry == last:
            repeated += 1
        else:
            _note_repeats(lines, repeated)
            last, repeated = entry, 0
        if repeated < _RECURSIVE_CUTOFF:
            lines.append(_frame_text(node))
    _note_repeats(lines, repeated)
    return lines


#: Each frame's text by ``(id(code), instruction)``: the place in the code fixes the line and
#: the markers. The entry keeps its code object, so the id cannot be reused while it is cached.
_frame_texts: dict[tuple[int, int], tuple[CodeType, str]] = {}
_FRAME_TEXTS_MAX = 4096


def _frame_text(tb: TracebackType) -> str:
    """``  File "...", line N, in f`` with its source line and markers, by ``traceback`` itself
    for the first traceback through this place, from the cache after that."""
    code = tb.tb_frame.f_code
    key = (id(code), tb.tb_lasti)
    cached = _frame_texts.get(key)
    if cached is not None and cached[0] is code:
        return cached[1]
    text = "".join(traceback.StackSummary.from_list(traceback.extract_tb(tb, limit=1)).format())
    if len(_frame_texts) >= _FRAME_TEXTS_MAX:
        _frame_texts.clear()
    _frame_texts[key] = (code, text)
    return text


def _note_repeats(lines: list[str], repeated: int) -> None:
    if repeated >= _RECURSIVE_CUTOFF:
        more = repeated - _RECURSIVE_CUTOFF + 1
        lines.append(f"  [Previous line repeated {more} more time{'s' if more > 1 else ''}]\n")


def _exception_line(exc: BaseException) -> str:
    """``Type: message`` as ``traceback.format_exception_only`` writes it; that function itself
    (a ``TracebackException`` per call) for syntax errors and exceptions with notes."""
    kind = type(exc)
    if issubclass(kind, SyntaxError) or getattr(exc, "__notes__", None) is not None:
        return "".join(traceback.format_exception_only(kind, exc))
    name = kind.__qualname__ if kind.__module__ == "__main__" else exception_type_name(kind)
    try:
        text = str(exc)
    except Exception:
        text = "<exception str() failed>"
    return f"{name}: {text}\n" if text else f"{name}\n"


def _is_group(exc: BaseException) -> bool:
    group = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+
    return group is not None and isinstance(exc, group)


def render_stacktrace(stack: list[InnerStackTrace] | None, max_frames: int = 20) -> str:
    """Readable text of a wire stack trace, innermost frames last, for notifiers and details."""
    if not stack:
        return ""
    blocks = []
    for entry in reversed(stack):
        frames = entry.trace_lines or []
        lines = [f'  File "{f.file}", line {f.line}, in {f.function}' for f in frames[-max_frames:]]
        if len(frames) > max_frames:
            lines.insert(0, f"  ... {len(frames) - max_frames} earlier frames")
        blocks.append("\n".join([*lines, f"{entry.type}: {entry.message}"]))
    return "\n\nThe above exception led to:\n\n".join(blocks)
