"""Exceptions into the event model: qualified type names and one stack entry per chained exception."""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any

from alertkit.models import InnerStackTrace, StackTraceLine

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_MAX_CHAIN = 10
_MAX_TEXT_FRAMES = 50


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


def build_stacktrace(exc: BaseException) -> list[InnerStackTrace]:
    """One ``InnerStackTrace`` per exception in the chain, frames oldest first."""
    entries = []
    for item in exception_chain(exc):
        lines = [
            StackTraceLine(function=frame.name, line=frame.lineno or 0, file=frame.filename)
            for frame in traceback.extract_tb(item.__traceback__)
        ]
        entries.append(
            InnerStackTrace(
                type=exception_type_name(type(item)), message=safe_str(item), trace_lines=lines
            )
        )
    return entries


def format_exception_text(exc_info: ExcInfo) -> str:
    """The traceback as Python prints it, for destinations that show text."""
    try:
        # Bounded: a deep recursion or a long chain must not stall the policy thread.
        return "".join(traceback.format_exception(*exc_info, limit=_MAX_TEXT_FRAMES)).rstrip()
    except Exception:
        return f"{exception_type_name(exc_info[0])}: {safe_str(exc_info[1])}"


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
