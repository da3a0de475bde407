"""Bad input never reaches the application as an exception, and what is sent is valid and bounded.

Property tests (hypothesis) throw generated input at every capture point (``Client.log``,
``create_new_app_event`` + ``send_event_async``, ``AlertHandler``) and at the config parsers
(backend URLs, ``Client`` options): 10,006 examples in all (the ``examples(...)`` below; set
``ALERTKIT_BAD_INPUT_SCALE`` to run more or fewer). For each capture the event must arrive at the
backend (none lost, no swallowed internal error) and, after the default processors, encode to
valid JSON of the wire types within the limits.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertkit import Client
from alertkit.backends import create_backend
from alertkit.backends.registry import known_schemes
from alertkit.errors import ConfigError
from alertkit.handler import AlertHandler
from alertkit.limits import MAX_NAME, Limits
from alertkit.models import (
    AppEvent,
    CustomData,
    CustomStringData,
    Envelope,
    decode_event,
    encode_event,
)
from alertkit.scrub import default_processors
from alertkit.testing import MemoryBackend

LIMITS = Limits()
MARKER_ROOM = 40  # a cut string may end with "...[cut N chars]"
LEVELS = ["debug", "info", "warning", "error", "fatal", "critical", "WARN", "Error"]
PROPERTY = settings(
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def examples(count: int) -> settings:
    """The shared settings with ``count`` examples (times ``ALERTKIT_BAD_INPUT_SCALE``, default 1)."""
    scale = float(os.environ.get("ALERTKIT_BAD_INPUT_SCALE", "1"))
    return settings(PROPERTY, max_examples=max(1, round(count * scale)))


# -- odd values ------------------------------------------------------------------------------------


class Unprintable:
    """Every way of turning it into text raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no format")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # for hypothesis' reports
        printer.text("Unprintable()")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class NoLen(list):  # type: ignore[type-arg]
    """A list whose ``len()`` and truth test raise."""

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # for hypothesis' reports
        printer.text("NoLen()")


def nested(depth: int, kind: str) -> Any:
    value: Any = "leaf password=hunter2"
    for _ in range(depth):
        value = [value] if kind == "list" else {"child": value}
    return value


def cyclic(kind: str) -> Any:
    if kind == "list":
        loop: list[Any] = [1]
        loop.append(loop)
        return loop
    mapping: dict[str, Any] = {"password": "p"}
    mapping["self"] = {"back": mapping}
    return mapping


SECRETS = [
    "password=hunter2",
    "4111 1111 1111 1111",
    "Authorization: Bearer abc123def456",
    "https://user:pw@host/cb?token=t0k3n&page=2",
]
characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.sampled_from(list("0123456789 -=:/?&@%\n\t\x00")),
)
texts = st.one_of(
    st.text(characters, max_size=24),
    st.builds(
        lambda a, s, b: a + s + b,
        st.text(max_size=4),
        st.sampled_from(SECRETS),
        st.text(max_size=8),
    ),
)
scalars = st.one_of(
    texts,
    st.binary(max_size=40),
    st.integers(),
    # beyond int64, and beyond the digits str() may print (4300)
    st.sampled_from([63, 64, 20_000]).map(lambda bits: -(1 << bits)),
    st.floats(),
    st.booleans(),
    st.none(),
    st.builds(Unprintable),
    st.builds(object),
)
odd = st.one_of(
    st.integers(min_value=10, max_value=3000).flatmap(
        lambda depth: st.sampled_from(["list", "dict"]).map(lambda kind: nested(depth, kind))
    ),
    st.sampled_from(["list", "dict"]).map(cyclic),
    st.lists(st.integers(), max_size=3).map(NoLen),
)
values = st.recursive(
    st.one_of(scalars, odd),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(texts, st.integers(), st.builds(Unprintable)), children, max_size=3
        ),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    ),
    max_leaves=6,
)
keys = st.one_of(
    st.sampled_from(
        ["eventtype", "eventmessage", "user", "session", "time", "url", "corrid", "device"]
    ),
    st.sampled_from(["password", "api_key", "Authorization", "card_number", "note"]),
    texts,
    st.integers(),
    st.builds(Unprintable),
)


# -- fixtures and checks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture(scope="module")
def client(backend: MemoryBackend) -> Iterator[Client]:
    made = Client(
        backends=[backend],
        processors=default_processors(),
        sample_system=False,
        register_atexit=False,
    )
    yield made
    made.shutdown(5.0)


def start(client: Client, backend: MemoryBackend) -> None:
    """Forget what an earlier (failed) example left behind."""
    client.flush(30.0)
    backend.clear()


def delivered(client: Client, backend: MemoryBackend, internal_errors: list[Any]) -> list[Envelope]:
    """Wait for the pipeline, check nothing failed inside it, and return what arrived."""
    assert client.flush(30.0)
    swallowed = list(internal_errors)
    internal_errors.clear()  # so that the next example starts clean and shrinking finds the cause
    assert not swallowed, swallowed
    envelopes = list(backend.envelopes)
    backend.clear()
    for envelope in envelopes:
        check_envelope(envelope)
    return envelopes


def check_envelope(envelope: Envelope) -> None:
    """Valid JSON of the wire types, within the limits."""
    decode_event(encode_event(envelope.event))  # encodes, and every field has its declared type
    event = envelope.event
    assert len(event.event_message) <= LIMITS.max_message + MARKER_ROOM
    for name in AppEvent.__struct_fields__:
        value = getattr(event, name)
        if isinstance(value, str) and name != "event_message":
            assert len(value) <= LIMITS.max_string + MARKER_ROOM, name
    for tag in event.context_tags or ():
        assert len(tag) <= MAX_NAME + MARKER_ROOM
    stack = event.event_stacktrace or []
    assert len(stack) <= LIMITS.max_exceptions + 1
    for entry in stack:
        assert len(entry.trace_lines or ()) <= LIMITS.max_frames + 1
    for part in (envelope.details, envelope.payload, envelope.request_log):
        if part is not None:
            assert len(json.dumps(part, allow_nan=False)) <= 2 * LIMITS.max_total
            check_bounded(part, 0)
    json.dumps([envelope.tags, envelope.links, envelope.images], allow_nan=False)
    for text in (envelope.exc_text, envelope.template):
        assert text is None or len(text) <= LIMITS.max_message + MARKER_ROOM


def check_bounded(value: Any, depth: int) -> None:
    assert depth <= LIMITS.max_depth
    if isinstance(value, str):
        assert len(value) <= LIMITS.max_string + MARKER_ROOM
    elif isinstance(value, dict):
        assert len(value) <= LIMITS.max_items + 1
        for item in value.values():
            check_bounded(item, depth + 1)
    elif isinstance(value, list):
        assert len(value) <= LIMITS.max_items + 1
        for item in value:
            check_bounded(item, depth + 1)
    else:
        assert value is None or isinstance(value, bool | int | float)


def raise_nested(depth: int, message: Any) -> None:
    if depth:
        raise_nested(depth - 1, message)
    raise UnprintableError() if message is None else ValueError(message)


def exception(depth: int, chain: int, message: Any) -> BaseException:
    """A raised exception with ``depth`` extra frames and ``chain`` causes behind it."""
    error: BaseException | None = None
    for _ in range(chain + 1):
        try:
            try:
                raise_nested(depth, message)
            except Exception as inner:
                if error is not None:
                    raise inner from error
                raise
        except Exception as exc:
            error = exc
    assert error is not None
    return error


messages = st.one_of(st.none(), texts, st.builds(Unprintable))
small_exceptions = st.builds(exception, st.integers(0, 5), st.integers(0, 2), messages)
# Past the limits: more frames than max_frames, more chained exceptions than max_exceptions
# (formatting them costs the traceback module some milliseconds, so they come less often).
big_exceptions = st.builds(
    lambda shape, message: exception(*shape, message),
    st.sampled_from([(LIMITS.max_frames + 20, 0), (2, LIMITS.max_exceptions + 2)]),
    messages,
)
exceptions = st.one_of(small_exceptions, small_exceptions, small_exceptions, big_exceptions)
# An exception in about one example in four: formatting a traceback costs milliseconds.
maybe_exception = st.one_of(st.none(), st.none(), st.none(), exceptions)
# -- the capture points ----------------------------------------------------------------------------


@examples(2200)
@given(
    data=st.one_of(st.dictionaries(keys, values, max_size=4), values),
    level=st.sampled_from(LEVELS),
    error=maybe_exception,
)
def test_client_log(client, backend, internal_errors, data, level, error):
    start(client, backend)
    client.log(data, level, exc_info=error if error is not None else False)
    assert len(delivered(client, backend, internal_errors)) == 1


def test_client_log_key_whose_str_raises(client, backend, internal_errors):
    start(client, backend)
    client.log({Unprintable(): "value", "eventmessage": "kept"}, exc_info=False)
    [envelope] = delivered(client, backend, internal_errors)
    assert envelope.event.event_message == "kept"
    assert envelope.details == {"<unprintable Unprintable>": "value"}


@examples(1400)
@given(
    level=st.sampled_from(LEVELS),
    words=st.lists(texts, min_size=3, max_size=3),
    message=st.one_of(texts, st.builds(Unprintable), st.integers()),
    error=maybe_exception,
    custom=st.lists(st.one_of(texts, st.none()), max_size=10),
    url=st.one_of(st.none(), texts),
)
def test_create_new_app_event(
    client, backend, internal_errors, level, words, message, error, custom, url
):
    start(client, backend)
    event = client.create_new_app_event(level, words[0], words[1], message, exc_info=error)
    strings = {f"custom_data{i + 1}": value for i, value in enumerate(custom)}
    event.custom_properties = CustomData(string_data=CustomStringData(**strings))
    event.context_url = url
    event.event_user = words[2]
    client.send_event_async(event)
    assert len(delivered(client, backend, internal_errors)) == 1


RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
extra_keys = st.one_of(
    st.sampled_from(["password", "user", "incident_key", "tags", "links", "images", "note"]),
    st.text(max_size=10),
).map(lambda key: f"{key}_" if key in RESERVED else key)  # logging refuses its own names


@pytest.fixture(scope="module")
def handler(client: Client) -> AlertHandler:
    return AlertHandler(client=client, level=logging.DEBUG)


STACK = "Stack (most recent call last):\n" + "".join(traceback.format_stack())


def emit(
    handler: AlertHandler,
    level: int,
    msg: Any,
    args: Any,
    exc_info: Any = None,
    extra: dict[str, Any] | None = None,
    sinfo: str | None = None,
) -> None:
    """What ``Logger.log`` does, without the other handlers a test run attaches to every logger
    (pytest's capture handler raises when a message fails to format)."""
    record = logging.getLogger("tests.bad_input").makeRecord(
        "tests.bad_input", level, __file__, 1, msg, args, exc_info, extra=extra, sinfo=sinfo
    )
    handler.handle(record)


@examples(2200)
@given(
    msg=st.one_of(
        texts,
        st.sampled_from(["%s", "%s %s", "%d", "%(a)s", "%(password)s %z", "%", "%.1000000s"]),
        values,
    ),
    args=st.one_of(
        st.lists(values, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "password"]), values, min_size=1).map(lambda d: (d,)),
    ),
    extra=st.dictionaries(extra_keys, values, max_size=3),
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 51]),
    error=maybe_exception,
    stack_info=st.booleans(),
)
def test_alert_handler(
    client, backend, internal_errors, handler, msg, args, extra, level, error, stack_info
):
    start(client, backend)
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    emit(
        handler,
        level,
        msg,
        args,
        exc_info=exc_info,
        extra=extra,
        sinfo=STACK if stack_info else None,
    )
    assert len(delivered(client, backend, internal_errors)) == 1


HUGE = 10 * 1024 * 1024


@examples(6)
@given(
    text=st.sampled_from(
        [
            "x" * HUGE,
            "4111 1111 1111 1111 " * (HUGE // 20),
            "password=hunter2 " * (HUGE // 17),
            "\udc80é" * (HUGE // 2),
        ]
    ),
    where=st.sampled_from(["log", "handler", "event"]),
)
def test_ten_megabyte_strings(client, backend, internal_errors, handler, text, where):
    start(client, backend)
    if where == "log":
        client.log({"eventmessage": text, "details": text}, exc_info=False)
    elif where == "handler":
        emit(handler, logging.ERROR, text + "%s", (text,), extra={"big": text})
    else:
        client.send_event_async(client.create_new_app_event(event_message=text))
    [envelope] = delivered(client, backend, internal_errors)
    assert "hunter2" not in encode_event(envelope.event).decode()
    assert "4111 1111 1111 1111" not in encode_event(envelope.event).decode()


# -- the config parsers ----------------------------------------------------------------------------

url_text = st.text(
    st.one_of(st.characters(), st.sampled_from(list(":/?#[]@!$&'()*+,;=%._-~ \x00"))),
    max_size=60,
)
urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, sep, rest: scheme + sep + rest,
        st.sampled_from([*known_schemes(), "", "HTTP", "unknown", "pagerduty ", "memory"]),
        st.sampled_from(["://", ":/", ":", "", ":///"]),
        url_text,
    ),
    st.builds(
        lambda scheme, query: f"{scheme}://host/path?{query}",
        st.sampled_from(known_schemes()),
        st.sampled_from(["timeout=", "timeout=-1", "connections=0", "min_level=loud", "x=1"]),
    ),
    st.builds(lambda n: "local:///" + "a" * n, st.integers(200, 5000)),
)


@examples(3700)
@given(spec=st.one_of(urls, st.none(), st.integers(), st.binary(max_size=10)))
def test_create_backend_rejects_malformed_urls_clearly(spec):
    try:
        made = create_backend(spec)
    except (ConfigError, ValueError, TypeError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message for {spec!r}"
        return
    made.close()


client_options = st.fixed_dictionaries(
    {},
    optional={
        "api_key": st.one_of(texts, st.integers(), st.none()),
        "tags": st.one_of(st.lists(st.one_of(texts, st.integers()), max_size=3), texts),
        "threads": st.one_of(st.integers(-2, 3), st.floats(), texts),
        "queue_size": st.one_of(st.integers(-2, 3), st.booleans()),
        "timeout": st.one_of(st.floats(), st.integers(-1, 2), texts),
        "backends": st.one_of(st.lists(urls, max_size=2), texts, st.integers()),
        "app_version": st.one_of(texts, st.none(), st.integers()),
    },
)


@examples(500)
@given(options=client_options)
def test_client_options_are_checked_with_clear_errors(options):
    try:
        made = Client(sample_system=False, register_atexit=False, **options)
    except (ConfigError, ValueError, TypeError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message for {options!r}"
        return
    made.shutdown(0.5)


def test_an_unknown_level_is_a_programming_error_said_at_once(client):
    with pytest.raises(ValueError, match="loud"):
        client.log({"eventmessage": "x"}, "loud")
