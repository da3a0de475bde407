"""A backend URL's query options, read the same way by every backend.

``?timeout=2.5&connections=4&verify=no``: numbers, counts and yes/no flags are converted here, once,
so that ``verify=off`` means the same to Slack as to Redis, and a wrong value fails at construction
with an error that names the option. A value is quoted in that error unless its option is marked
secret (an API key in the query must not be printed beside the mistake).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alertkit.model.errors import ConfigError

#: A flag given without a value (``?silent``) is on.
_YES = frozenset({"1", "true", "yes", "on", ""})
_NO = frozenset({"0", "false", "no", "off"})


def reject_unknown(label: str, query: Mapping[str, str], known: Sequence[str]) -> None:
    """Refuse an option the backend does not take, listing the ones it does.

    Raises:
        ConfigError: naming the unknown option(s).
    """
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise ConfigError(
            f"{label}: unknown URL option(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )


def read_flag(label: str, option: str, value: str) -> bool:
    """A yes/no option: ``1 true yes on`` or ``0 false no off`` (any case).

    Raises:
        ConfigError: naming the option, for any other value.
    """
    text = value.strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ConfigError(
        f"{label}: {option} must be yes or no (1/0, true/false, on/off), got {value!r}"
    )


def read_options(
    label: str,
    query: Mapping[str, str],
    *,
    text: Sequence[str] = (),
    number: Sequence[str] = (),
    count: Sequence[str] = (),
    flag: Sequence[str] = (),
    secret: Sequence[str] = (),
) -> dict[str, Any]:
    """The options present in ``query``, converted: ``text`` as given, ``number`` to float,
    ``count`` to int, ``flag`` to bool. An option absent from ``query`` is absent from the result,
    so the backend's own default applies.

    Args:
        label: the backend's name in error messages (``"slack"``).
        query: the URL's query, one value per option.
        secret: options whose value an error must never quote.

    Raises:
        ConfigError: an unknown option, or a value of the wrong kind, naming the option.
    """
    reject_unknown(label, query, [*text, *number, *count, *flag])
    options: dict[str, Any] = {key: query[key] for key in text if key in query}
    for kinds, convert, noun in ((number, float, "a number"), (count, int, "a whole number")):
        for key in kinds:
            if key not in query:
                continue
            try:
                options[key] = convert(query[key])
            except ValueError:
                shown = "" if key in secret else f", got {query[key]!r}"
                raise ConfigError(f"{label}: {key} must be {noun}{shown}") from None
    for key in flag:
        if key in query:
            options[key] = read_flag(label, key, query[key])
    return options


#: The units a ``?rate=`` option may use, in seconds.
_RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def read_rate(label: str, value: str) -> tuple[int, float]:
    """``?rate=20/s``, ``120/min`` or ``0.5/s`` as ``(events, seconds)``, the form of a backend's
    ``rate_limit`` (``0.5/s`` is one event per 2 seconds).

    Raises:
        ConfigError: naming the option, for anything else or a rate that is not positive.
    """
    amount, _, unit = value.strip().lower().partition("/")
    try:
        events = float(amount)
        seconds = _RATE_UNITS[unit.strip()]
    except (ValueError, KeyError):
        raise ConfigError(f"{label}: rate must be like 20/s or 120/min, got {value!r}") from None
    if not 0 < events < float("inf"):
        raise ConfigError(f"{label}: rate must be more than 0, got {value!r}")
    if events.is_integer():
        return int(events), seconds
    return 1, seconds / events
