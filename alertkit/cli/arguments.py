"""Argument types every subcommand shares: argparse turns their ``ArgumentTypeError`` into the
one-line usage error and exit status 2 that the CLI promises."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def seconds(maximum: float, *, zero: bool = False) -> Callable[[str], float]:
    """A number of seconds up to ``maximum``: more than 0, or from 0 with ``zero``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not ((value >= 0) if zero else (value > 0)) or not value <= maximum:  # refuses nan
            low = "between 0 and" if zero else "more than 0 and at most"
            raise argparse.ArgumentTypeError(f"must be {low} {maximum:g} seconds: {text}")
        return value

    return parse
