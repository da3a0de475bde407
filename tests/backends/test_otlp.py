"""OtlpBackend: OpenTelemetry logs over OTLP/HTTP, checked by a receiver that decodes every request
with the official ``opentelemetry-proto`` classes (tests/standins/otlp.py).

The backend contract runs in tests/backends/test_contract.py (``TestOtlpContract``); here: the
mapping to the logs data model, batching and the request size limit, the OTLP retry rules, partial
success, the URL forms and the ``OTEL_*`` environment variables.
"""

from __future__ import annotations

import gzip
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

import alertkit
from alertkit import AlertHandler, Client, ConfigError, Delivered, Rejected, RetryLater
from alertkit.backends import create_backend
from alertkit.backends.base import ClientContext
from alertkit.backends.otlp import OtlpBackend, severity
from alertkit.model.event import AppEvent, Envelope
from alertkit.testing import MemoryBackend
from tests.clients import clients_for_test
from tests.standins.http import Reply, Request
from tests.standins.otlp import OtlpReceiver, attributes_of, partial_success

FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)
TOKEN = "otlpS3cretToken42"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own OTEL_* settings must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server
    assert server.errors == [], "the official classes could not decode a request"


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    with clients_for_test(shutdown=2.0, retry=FAST) as make:
        yield make


def envelope(message: str = "card refused", **fields: Any) -> Envelope:
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type="PaymentDeclined",
        event_message=message,
        log_level="error",
        event_time=1,
    )
    return Envelope(event=event, **fields)


def bound(url: str, **options: Any) -> OtlpBackend:
    backend = OtlpBackend(url, **options)
    backend.bind(
        ClientContext(
            timeout=2.0,
            app_name="checkout",
            app_version="2.4.1",
            deployment_stage="production",
            hostname="web-7",
        )
    )
    return backend


# -- the mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_logged_exception_maps_onto_the_logs_data_model(
    receiver: OtlpReceiver, make_client: Any, encoding: str, compression: str
) -> None:
    """Severity, body, exception.*, code.*, details, tags, resource and scope, as decoded by the
    official classes from protobuf and from JSON, gzip-compressed or not."""
    client = make_client(
        f"otlp://127.0.0.1:{receiver.url.rsplit(':', 1)[1]}?encoding={encoding}&compression={compression}&batch_delay=0",
        app_name="checkout",
        app_version="2.4.1",
        deployment_stage="production",
        tags={"region": "eu-west-1"},
    )
    logger = logging.getLogger("shop.payments")
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("card 4242 refused")
        except ValueError:
            before = inspect.currentframe().f_lineno  # type: ignore[union-attr]
            logger.error(
                "payment %s failed",
                "o-1042",
                exc_info=True,
                extra={"order": {"id": 1042, "items": [1, 2]}, "amount": 12.5, "retry": False},
            )
            after = inspect.currentframe().f_lineno  # type: ignore[union-attr]
    finally:
        logger.removeHandler(handler)
    assert client.flush(5.0)
    [record] = receiver.wait_for(1)
    request = receiver.raw[0]
    assert (
        request.headers["content-type"]
        == {"protobuf": "application/x-protobuf", "json": "application/json"}[encoding]
    )
    assert (request.headers.get("content-encoding") == "gzip") is (compression == "gzip")
    assert record.severity_number == 17 and record.severity_text == "ERROR"
    assert record.body.string_value == "payment o-1042 failed"
    assert record.time_unix_nano > 1_600_000_000 * 10**9
    assert record.observed_time_unix_nano >= record.time_unix_nano
    attributes = attributes_of(record)
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "card 4242 refused"
    assert "Traceback (most recent call last)" in attributes["exception.stacktrace"]
    assert 'raise ValueError("card 4242 refused")' in attributes["exception.stacktrace"]
    assert attributes["code.function"] == "test_a_logged_exception_maps_onto_the_logs_data_model"
    assert attributes["code.filepath"] == __file__
    assert before < attributes["code.lineno"] < after
    assert attributes["code.function.name"] == attributes["code.function"]
    assert attributes["order"] == {"id": 1042, "items": [1, 2]}
    assert (attributes["amount"], attributes["retry"]) == (12.5, False)
    assert attributes["region"] == "eu-west-1"
    assert len(attributes["log.record.uid"]) == 32
    [resource_logs] = receiver.decoded[0].resource_logs
    resource = attributes_of(resource_logs.resource)
    assert resource["service.name"] == "checkout"
    assert resource["service.version"] == "2.4.1"
    assert resource["deployment.environment"] == "production"
    assert resource["host.name"] and isinstance(resource["host.name"], str)
    assert resource["process.pid"] == os.getpid()
    assert resource["telemetry.sdk.name"] == "alertkit"
    assert resource["telemetry.sdk.language"] == "python"
    assert resource["telemetry.sdk.version"] == alertkit.__version__
    assert [s.scope.name for s in resource_logs.scope_logs] == ["shop.payments"]


def test_a_record_has_no_breadcrumbs_so_an_otlp_client_takes_no_trail(make_client: Any) -> None:
    """The log record has no place for a trail: alone, the backend spares the policy thread the
    crumbs (made, scrubbed and bounded per error) nobody would read."""
    assert OtlpBackend.sends_breadcrumbs is False
    alone = make_client("otlp://127.0.0.1:9")
    beside_one_that_sends_them = make_client("otlp://127.0.0.1:9", MemoryBackend())
    alertkit.add_breadcrumb("cart loaded")
    assert alone.breadcrumbs.snapshot(logging.ERROR) is None
    assert beside_one_that_sends_them.breadcrumbs.snapshot(logging.ERROR)


def test_trace_and_span_ids_travel_as_bytes(receiver: OtlpReceiver) -> None:
    backend = bound(receiver.url)
    outcomes = backend.send([envelope(trace_id=TRACE_ID, span_id=SPAN_ID), envelope(trace_id="zz")])
    backend.close()
    assert outcomes == [Delivered({"status": 200})] * 2
    first, second = receiver.records()
    assert (first.trace_id.hex(), first.span_id.hex()) == (TRACE_ID, SPAN_ID)
    assert (second.trace_id, second.span_id) == (b"", b""), "a malformed id is left out"


def test_trace_ids_in_json_are_hex(receiver: OtlpReceiver) -> None:
    backend = bound(receiver.url, encoding="json", compression="none")
    backend.send([envelope(trace_id=TRACE_ID, span_id=SPAN_ID)])
    backend.close()
    body = receiver.raw[0].body.decode()
    assert f'"traceId":"{TRACE_ID}"' in body and f'"spanId":"{SPAN_ID}"' in body
    assert receiver.records()[0].trace_id.hex() == TRACE_ID


@pytest.mark.parametrize(
    ("levelno", "number", "text"),
    [
        (10, 5, "DEBUG"),
        (20, 9, "INFO"),
        (25, 12, "INFO"),
        (30, 13, "WARN"),
        (40, 17, "ERROR"),
        (50, 21, "FATAL"),
        (5, 1, "TRACE"),
    ],
)
def test_severity_follows_the_data_model(levelno: int, number: int, text: str) -> None:
    assert severity(levelno) == (number, text)


def test_scrubbed_details_arrive_scrubbed(receiver: OtlpReceiver, make_client: Any) -> None:
    """The policy stage runs before the backend: a password in the details never reaches OTLP."""
    client = make_client(OtlpBackend(receiver.url, batch_delay=0))
    client.log({"eventmessage": "login failed", "password": "hunter2-secret"}, "warning", "auth")
    assert client.flush(5.0)
    [record] = receiver.wait_for(1)
    assert "hunter2-secret" not in str(attributes_of(record))
    assert record.severity_text == "WARN"


# -- batching --------------------------------------------------------------------------------------


def test_many_events_go_in_few_requests(receiver: OtlpReceiver, make_client: Any) -> None:
    client = make_client(OtlpBackend(receiver.url, batch_size=100, batch_delay=0.5))
    for index in range(250):
        client.log({"eventmessage": f"event {index}"}, "error", "batch")
    assert client.flush(10.0)
    records = receiver.wait_for(250)
    assert sorted(r.body.string_value for r in records) == sorted(f"event {i}" for i in range(250))
    assert 3 <= len(receiver.decoded) <= 10, "batched: at most batch_size records per request"
    assert all(len(m.resource_logs[0].scope_logs[0].log_records) <= 100 for m in receiver.decoded)
    assert client.stats()["otlp"]["delivered"] == 250


def test_a_batch_over_the_size_limit_is_split(receiver: OtlpReceiver) -> None:
    backend = bound(receiver.url, max_request_bytes=4096, compression="none")
    batch = [envelope(f"event {i}", details={"blob": "x" * 700}) for i in range(12)]
    outcomes = backend.send(batch)
    backend.close()
    assert all(isinstance(o, Delivered) for o in outcomes)
    assert len(receiver.decoded) > 1
    assert all(len(request.body) <= 4096 for request in receiver.raw)
    assert [r.body.string_value for r in receiver.records()] == [f"event {i}" for i in range(12)]


def test_an_event_bigger_than_a_request_is_rejected_alone(receiver: OtlpReceiver) -> None:
    backend = bound(receiver.url, max_request_bytes=4096)
    outcomes = backend.send([envelope("small"), envelope("huge", details={"blob": "y" * 8000})])
    backend.close()
    assert isinstance(outcomes[0], Delivered)
    assert isinstance(outcomes[1], Rejected) and "max_request_bytes" in outcomes[1].reason
    assert [r.body.string_value for r in receiver.records()] == ["small"]


# -- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, RetryLater),
        (502, RetryLater),
        (503, RetryLater),
        (504, RetryLater),
        (500, Rejected),
        (400, Rejected),
        (408, Rejected),
    ],
)
def test_only_the_statuses_the_otlp_spec_names_are_retried(status: int, kind: type) -> None:
    with OtlpReceiver(lambda message, request: Reply(status, b"")) as server:
        backend = bound(server.url)
        outcomes = backend.send([envelope(), envelope()])
        backend.close()
    assert all(isinstance(o, kind) for o in outcomes), outcomes
    assert all(str(status) in o.reason for o in outcomes if not isinstance(o, Delivered))


def test_429_with_retry_after_is_retried_after_the_wait(make_client: Any) -> None:
    answers = iter([Reply(429, b"", {"Retry-After": "1"})])

    def answer(message: ExportLogsServiceRequest, request: Request) -> Reply:
        return next(answers, Reply(200, b"", {"Content-Type": "application/x-protobuf"}))

    with OtlpReceiver(answer) as server:
        backend = bound(server.url)
        first = backend.send([envelope()])
        backend.close()
        assert isinstance(first[0], RetryLater) and first[0].delay == 1.0
        client = make_client(OtlpBackend(server.url, batch_delay=0))
        client.log({"eventmessage": "after the wait"}, "error", "t")
        assert client.flush(10.0)
        records = server.wait_for(2)
    assert records[-1].body.string_value == "after the wait"
    assert client.stats()["otlp"]["delivered"] == 1


def test_an_error_status_body_gives_the_reason() -> None:
    from google.rpc.status_pb2 import Status

    body = Status(code=3, message="log record too old").SerializeToString()
    with OtlpReceiver(
        lambda m, r: Reply(400, body, {"Content-Type": "application/x-protobuf"})
    ) as server:
        backend = bound(server.url)
        [outcome] = backend.send([envelope()])
        backend.close()
    assert isinstance(outcome, Rejected) and "log record too old" in outcome.reason


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_partial_success_rejects_that_many_events(encoding: str, make_client: Any) -> None:
    as_json = encoding == "json"
    kind = "application/json" if as_json else "application/x-protobuf"
    body = partial_success(2, "2 records had invalid attributes", as_json=as_json)
    with OtlpReceiver(lambda m, r: Reply(200, body, {"Content-Type": kind})) as server:
        backend = bound(server.url, encoding=encoding)
        outcomes = backend.send([envelope(f"e{i}") for i in range(5)])
        backend.close()
        assert [type(o) for o in outcomes] == [Delivered] * 3 + [Rejected] * 2
        assert all("invalid attributes" in o.reason for o in outcomes if isinstance(o, Rejected))
        assert len(server.decoded) == 1, "a partial success is not resent"
        client = make_client(
            OtlpBackend(server.url, encoding=encoding, batch_size=5, batch_delay=1.0)
        )
        for index in range(5):
            client.log({"eventmessage": f"c{index}"}, "error", "t")
        assert client.flush(10.0)
    stats = client.stats()["otlp"]
    assert (stats["delivered"], stats["rejected"]) == (3, 2)


# -- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("otlp://collector", "http://collector:4318/v1/logs"),
        ("otlp://collector:4318", "http://collector:4318/v1/logs"),
        ("otlps://otlp.example.com", "https://otlp.example.com:443/v1/logs"),
        (
            "otlps://otlp.example.com:4318/tenant/7",
            "https://otlp.example.com:4318/tenant/7/v1/logs",
        ),
        ("otlp://collector:4318/v1/logs", "http://collector:4318/v1/logs"),
        ("otlp://", "http://localhost:4318/v1/logs"),
    ],
)
def test_url_forms(url: str, endpoint: str) -> None:
    assert create_backend(url).url == endpoint  # type: ignore[attr-defined]


def test_url_options() -> None:
    backend = create_backend(
        f"otlp://c:4318?encoding=json&compression=none&batch_size=64&batch_delay=0.05&max_request_bytes=65536"
        f"&headers=x-api-key={TOKEN},x-team=core&service_name=billing&resource=team%3Dcore"
    )
    assert isinstance(backend, OtlpBackend)
    assert (backend.encoding, backend.compression, backend.max_batch, backend.batch_delay) == (
        "json",
        "none",
        64,
        0.05,
    )
    assert backend.max_request_bytes == 65536
    assert backend.headers == {"x-api-key": TOKEN, "x-team": "core"}
    resource = dict(backend._resource)
    assert (resource["service.name"], resource["team"]) == ("billing", "core")
    assert TOKEN not in repr(backend)


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda: OtlpBackend(encoding="xml"), "encoding"),
        (lambda: OtlpBackend(compression="zstd"), "compression"),
        (lambda: OtlpBackend(batch_size=0), "batch_size"),
        (lambda: OtlpBackend(batch_delay=-1), "batch_delay"),
        (lambda: OtlpBackend(max_request_bytes=10), "max_request_bytes"),
        (lambda: OtlpBackend("ftp://x"), "endpoint"),
        (lambda: OtlpBackend(headers={"a": "b\r\nc: d"}), "headers"),
        (lambda: create_backend("otlp://c?batch_size=many"), "batch_size"),
        (lambda: create_backend("otlp://c?colour=red"), "unknown URL option"),
    ],
)
def test_bad_configuration_names_the_option(build: Any, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        build()


def test_environment_variables_configure_endpoint_headers_and_resource(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{TOKEN},x-tenant=acme"
    )
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=ignored,deployment.environment=staging,team=core%2Cpayments",
    )
    client = make_client("otlp://", app_name="checkout")
    backend = client.backends[0]
    assert TOKEN not in repr(backend) and TOKEN not in repr(client)
    client.log({"eventmessage": "from the environment"}, "error", "t")
    assert client.flush(5.0)
    receiver.wait_for(1)
    request = receiver.raw[0]
    assert request.path == "/v1/logs"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-tenant"] == "acme"
    resource = attributes_of(receiver.decoded[0].resource_logs[0].resource)
    assert resource["service.name"] == "orders", "OTEL_SERVICE_NAME wins over the other sources"
    assert resource["deployment.environment"] == "staging"
    assert resource["team"] == "core,payments"


def test_the_logs_endpoint_variable_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9999/custom/path")
    assert OtlpBackend().url == "http://logs:9999/custom/path"
    assert create_backend("otlp://url-host:4318").url == "http://url-host:4318/v1/logs", (
        "the URL wins"
    )  # type: ignore[attr-defined]


def test_explicit_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from-env")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    backend = OtlpBackend(
        "http://c:4318", headers={"x-api-key": "explicit"}, service_name="explicit"
    )
    assert backend.headers["x-api-key"] == "explicit"
    assert dict(backend._resource)["service.name"] == "explicit"


def test_a_malformed_headers_variable_is_a_construction_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"just-{TOKEN}")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_HEADERS") as caught:
        OtlpBackend()
    assert TOKEN not in str(caught.value)


def test_credentials_in_the_url_are_refused_without_being_shown() -> None:
    with pytest.raises(ConfigError, match="headers") as caught:
        create_backend(f"otlp://user:{TOKEN}@collector:4318")
    assert TOKEN not in str(caught.value)


def test_header_secrets_are_masked_in_reasons() -> None:
    """A receiver that quotes the request's headers back: the token never reaches a reason."""
    with OtlpReceiver(
        lambda m, r: Reply(401, f"bad token Bearer {TOKEN}", {"Content-Type": "text/plain"})
    ) as server:
        backend = bound(server.url, headers={"Authorization": f"Bearer {TOKEN}"})
        [outcome] = backend.send([envelope()])
        backend.close()
    assert isinstance(outcome, Rejected) and "401" in outcome.reason
    assert TOKEN not in outcome.reason and TOKEN not in repr(backend)


def test_gzip_bodies_are_real_gzip(receiver: OtlpReceiver) -> None:
    backend = bound(receiver.url)
    backend.send([envelope()])
    backend.close()
    raw = receiver.raw[0]
    assert raw.body[:2] == b"\x1f\x8b"
    assert ExportLogsServiceRequest.FromString(gzip.decompress(raw.body)).resource_logs


def test_a_trickle_of_events_waits_for_its_batch(receiver: OtlpReceiver, make_client: Any) -> None:
    """``batch_delay``: events a few milliseconds apart still travel in one request."""
    import threading

    client = make_client(OtlpBackend(receiver.url, batch_delay=2.0))
    pause = threading.Event()
    for index in range(5):
        client.log({"eventmessage": f"trickle {index}"}, "error", "t")
        pause.wait(0.02)
    records = receiver.wait_for(5)
    assert len(records) == 5
    assert len(receiver.decoded) == 1


def test_flush_and_shutdown_do_not_wait_for_a_batch_to_fill(
    receiver: OtlpReceiver, make_client: Any
) -> None:
    """A batch_delay far longer than the flush timeout and the shutdown budget still delivers."""
    client = make_client(OtlpBackend(receiver.url, batch_delay=60))
    client.log({"eventmessage": "flushed"}, "error", "t")
    assert client.flush(5.0)
    assert [r.body.string_value for r in receiver.records()] == ["flushed"]
    client.log({"eventmessage": "at shutdown"}, "error", "t")
    client.shutdown(5.0)
    assert [r.body.string_value for r in receiver.records()] == ["flushed", "at shutdown"]
