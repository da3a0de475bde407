"""Client: platform defaults, event creation, the log() mapping, options checked at construction."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from alertkit import Client, Delivered, RetryPolicy
from alertkit.testing import MemoryBackend

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "trakerr-appevent.schema.json"


class PaymentDeclined(Exception):
    """An application exception with a module-qualified name."""


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[Client]:
    c = Client(
        api_key="secret-api-key-123",
        app_version="2.4.1",
        deployment_stage="production",
        application_sku="sku-9",
        tags=["team:payments"],
        backends=[memory],
        sample_system=False,
        register_atexit=False,
    )
    yield c
    c.shutdown(2.0)


def test_defaults_come_from_platform(client: Client) -> None:
    event = client.create_new_app_event("info", event_message="hello")
    assert event.context_env_language == "Python"
    assert event.context_env_name == platform.python_implementation()
    assert event.context_env_version == platform.python_version()
    assert event.context_env_hostname == platform.node()
    if platform.system() != "Windows":
        assert event.context_app_os == platform.system()
        assert event.context_app_os_version == platform.release()
    assert event.context_app_version == "2.4.1"
    assert event.deployment_stage == "production"
    assert event.context_app_sku == "sku-9", "the SKU, not the version (Trakerr's bug)"
    assert event.context_tags == ["team:payments"]
    assert event.api_key == "secret-api-key-123"


def test_event_time_is_now_in_milliseconds(client: Client) -> None:
    import time

    before = int(time.time() * 1000)
    event = client.create_new_app_event()
    assert before <= event.event_time <= int(time.time() * 1000)


def test_system_sampler_fills_cpu_and_memory_and_stops(memory: MemoryBackend) -> None:
    client = Client(backends=[memory], register_atexit=False)
    event = client.create_new_app_event()
    if sys.platform.startswith("linux"):
        assert event.context_memory_percentage is not None
        assert 0 < event.context_memory_percentage <= 100
    sampler = client.events.sampler
    assert sampler is not None and sampler._thread is not None and sampler._thread.daemon
    client.shutdown(1.0)
    sampler._thread.join(3.0)
    assert not sampler._thread.is_alive()


def test_sampler_does_not_start_before_the_first_event(memory: MemoryBackend) -> None:
    client = Client(backends=[memory], register_atexit=False)
    assert client.events.sampler is not None and client.events.sampler._thread is None
    client.shutdown(1.0)


def test_critical_maps_to_fatal_and_unknown_level_raises(client: Client) -> None:
    assert client.create_new_app_event("critical").log_level == "fatal"
    assert client.create_new_app_event("WARNING").log_level == "warning"
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        client.create_new_app_event("loud")


def test_exception_type_is_the_real_qualified_name(client: Client) -> None:
    try:
        raise PaymentDeclined("card refused")
    except PaymentDeclined:
        event = client.create_new_app_event("error", exc_info=True)
    assert event.event_type == f"{__name__}.PaymentDeclined"
    assert event.event_message == "card refused"
    try:
        1 / 0
    except ZeroDivisionError:
        event = client.create_new_app_event(exc_info=True)
    assert event.event_type == "ZeroDivisionError"


def test_chained_exceptions_give_one_stack_entry_each(client: Client) -> None:
    def low() -> None:
        raise KeyError("row 7")

    def mid() -> None:
        try:
            low()
        except KeyError as exc:
            raise PaymentDeclined("lookup failed") from exc

    try:
        try:
            mid()
        except PaymentDeclined:
            raise RuntimeError("handler crashed")  # noqa: B904 - the implicit __context__ is the point
    except RuntimeError:
        event = client.create_new_app_event(exc_info=True)
    types = [entry.type for entry in event.event_stacktrace]
    assert types == ["RuntimeError", f"{__name__}.PaymentDeclined", "KeyError"]
    frames = event.event_stacktrace[2].trace_lines
    assert [f.function for f in frames][-2:] == ["mid", "low"]
    assert all(f.file.endswith("test_client.py") and f.line > 0 for f in frames)


def test_exc_info_tuple_is_used_as_is(client: Client) -> None:
    try:
        raise ValueError("kept")
    except ValueError:
        info = sys.exc_info()
    event = client.create_new_app_event(exc_info=info)
    assert event.event_type == "ValueError" and event.event_message == "kept"


def test_wire_json_of_a_client_event_validates(client: Client) -> None:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"missing file: {SCHEMA_PATH}")
    try:
        raise PaymentDeclined("x")
    except PaymentDeclined:
        event = client.create_new_app_event("critical", exc_info=True)
    jsonschema.validate(event.to_dict(), json.loads(SCHEMA_PATH.read_text()))


def test_log_maps_the_trakerr_keys_and_keeps_the_rest_as_details(
    client: Client, memory: MemoryBackend
) -> None:
    client.log(
        {
            "user": "jill@example.com",
            "eventtype": "logon issue",
            "eventmessage": "User refreshed the page.",
            "session": "s-1",
            "time": 1234,
            "url": "https://shop/x",
            "corrid": "c-9",
            "device": "pixel",
            "cart": [1, 2],
        },
        "info",
        "logon script",
        exc_info=False,
    )
    assert client.flush(5)
    envelope = memory.envelopes[0]
    event = envelope.event
    assert (event.event_user, event.event_type, event.event_message) == (
        "jill@example.com",
        "logon issue",
        "User refreshed the page.",
    )
    assert event.event_session == "s-1"
    assert event.context_operation_time_millis == 1234
    assert event.context_url == "https://shop/x"
    assert event.context_cross_app_correlation_id == "c-9"
    assert event.context_device == "pixel"
    assert event.classification == "logon script" and event.log_level == "info"
    assert envelope.details == {"cart": [1, 2]}


def test_log_attaches_the_active_exception(client: Client, memory: MemoryBackend) -> None:
    try:
        raise PaymentDeclined("declined")
    except PaymentDeclined:
        client.log({"eventmessage": "checkout failed"})
    assert client.flush(5)
    envelope = memory.envelopes[0]
    assert envelope.event.event_type.endswith("PaymentDeclined")
    assert envelope.event.event_message == "checkout failed"
    assert "PaymentDeclined: declined" in (envelope.exc_text or "")


def test_send_event_returns_one_result_per_backend(client: Client) -> None:
    results = client.send_event(client.create_new_app_event(), timeout=5)
    assert results == {"memory": Delivered()}


def test_send_event_async_future_and_callback(client: Client) -> None:
    import threading

    called = threading.Event()
    seen: list[dict] = []

    def callback(results: dict) -> None:
        seen.append(results)
        called.set()

    future = client.send_event_async(client.create_new_app_event(), callback=callback)
    assert isinstance(future.result(5)["memory"], Delivered)
    assert called.wait(5) and seen[0] == future.result()


def test_failing_callback_is_swallowed(client: Client, internal_errors: list) -> None:
    def callback(results: dict) -> None:
        raise RuntimeError("user bug")

    future = client.send_event_async(client.create_new_app_event(), callback=callback)
    future.result(5)
    assert client.flush(5)
    assert any("user bug" in str(e) for e in internal_errors)
    internal_errors.clear()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threads": 0}, ValueError, "threads"),
        ({"connections": -1}, ValueError, "connections"),
        ({"queue_size": "big"}, TypeError, "queue_size"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"app_version": 3}, TypeError, "app_version"),
        ({"backends": ["nosuch://x"]}, ValueError, "nosuch"),
        ({"backends": "local://"}, TypeError, "backends"),
        ({"tags": "a:b"}, TypeError, "tags"),
        ({"retry": 3}, TypeError, "retry"),
        ({"colour": "red"}, TypeError, "colour"),
    ],
)
def test_bad_options_raise_at_construction_naming_the_option(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        Client(register_atexit=False, **kwargs)


def test_retry_policy_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_repr_never_shows_the_api_key(client: Client) -> None:
    from alertkit.backends.http import HttpBackend

    backend = HttpBackend("https://events.example/api/v1/events", api_key="secret-api-key-123")
    assert "secret-api-key-123" not in repr(client)
    assert "secret-api-key-123" not in repr(backend)
    from_url = Client(
        backends=["http://127.0.0.1:9/v1/events?api_key=secret-api-key-123"], register_atexit=False
    )
    assert "secret-api-key-123" not in repr(from_url)
    assert "secret-api-key-123" not in repr(from_url.backends)
    from_url.shutdown(0.5)


def test_alertkit_backends_environment_is_the_fallback(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ALERTKIT_BACKENDS", f"local://{tmp_path}/a.db, memory://")
    from alertkit.backends import register

    register(MemoryBackend)
    client = Client(register_atexit=False)
    assert [b.scheme for b in client.backends] == ["local", "memory"]
    client.shutdown(1)


def test_default_backend_is_the_local_inbox(alertkit_home) -> None:
    client = Client(register_atexit=False, sample_system=False)
    assert [b.scheme for b in client.backends] == ["local"]
    assert str(client.backends[0].path).startswith(str(alertkit_home))
    client.shutdown(1)


def test_stats_count_delivered_with_reasons(client: Client) -> None:
    for _ in range(3):
        client.send_event_async(client.create_new_app_event())
    assert client.flush(5)
    stats = client.stats()["memory"]
    assert stats["delivered"] == 3 and stats["dropped"] == 0 and stats["queued"] == 0


def test_shutdown_is_idempotent_and_later_events_are_counted(client: Client) -> None:
    client.shutdown(1)
    client.shutdown(1)
    future = client.send_event_async(client.create_new_app_event())
    assert future.result(1) and client.stats()["memory"]["dropped"] == 1


def test_init_sets_the_default_client() -> None:
    import alertkit

    client = alertkit.init(backends=[MemoryBackend()], register_atexit=False)
    try:
        assert alertkit.get_client() is client
    finally:
        from alertkit.capture import submit

        submit._default = None
        client.shutdown(1)
