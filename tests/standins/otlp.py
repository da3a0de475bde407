"""An OTLP/HTTP logs receiver on 127.0.0.1 that decodes every request with the official
``opentelemetry-proto`` classes (never a parser of ours), protobuf or JSON, gzip or not.

Protobuf bodies go through ``ExportLogsServiceRequest.FromString``; JSON bodies through
``google.protobuf.json_format.Parse``, after turning the hex ``traceId``/``spanId`` that OTLP/JSON
uses (where protobuf's JSON mapping would use base64) into base64, as the Collector's receiver
does. A request that does not decode is kept in ``errors`` and answered 400.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from alertkit.testing.stand_in import Reply, Request, ScriptedServer


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key in ("traceId", "spanId"):
            if isinstance(node.get(key), str):
                node[key] = base64.b64encode(bytes.fromhex(node[key])).decode()
        for value in node.values():
            _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def decode(request: Request) -> ExportLogsServiceRequest:
    """The request's ``ExportLogsServiceRequest``, by the official classes.

    Raises:
        ValueError: a wrong path, content type or body.
    """
    if request.path != "/v1/logs":
        raise ValueError(f"path {request.path}")
    body = request.body
    if request.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    kind = request.headers.get("content-type", "")
    if kind == "application/x-protobuf":
        message = ExportLogsServiceRequest.FromString(body)
        if message.SerializeToString() != body:
            raise ValueError("protobuf body does not round-trip (unknown or misplaced fields)")
        return message
    if kind == "application/json":
        data = json.loads(body)
        _hex_ids_to_base64(data)
        return json_format.Parse(json.dumps(data), ExportLogsServiceRequest())
    raise ValueError(f"content type {kind!r}")


def partial_success(rejected: int, message: str, *, as_json: bool = False) -> bytes:
    """An ``ExportLogsServiceResponse`` with a partial success, encoded by the official classes."""
    response = ExportLogsServiceResponse(
        partial_success=ExportLogsPartialSuccess(
            rejected_log_records=rejected, error_message=message
        )
    )
    if as_json:
        return json_format.MessageToJson(response).encode()
    return response.SerializeToString()


@dataclass
class OtlpReceiver:
    """``with OtlpReceiver() as receiver:``; ``receiver.url`` is the base URL (no ``/v1/logs``).

    ``answer`` gives the reply to each decoded request (default: 200 with an empty response).
    """

    answer: Callable[[ExportLogsServiceRequest, Request], Reply] | None = None
    decoded: list[ExportLogsServiceRequest] = field(default_factory=list)
    raw: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ScriptedServer(self._reply)
        self.url = self._server.url
        self.arrived = threading.Condition(self._lock)

    def _reply(self, request: Request) -> Reply:
        try:
            message = decode(request)
        except Exception as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.arrived.notify_all()
            return Reply(400, b"undecodable", {"Content-Type": "text/plain"})
        with self._lock:
            self.decoded.append(message)
            self.raw.append(request)
            self.arrived.notify_all()
        if self.answer is not None:
            return self.answer(message, request)
        kind = request.headers.get("content-type", "application/x-protobuf")
        return Reply(200, b"{}" if kind == "application/json" else b"", {"Content-Type": kind})

    def records(self) -> list[LogRecord]:
        """Every log record received so far, in arrival order."""
        with self._lock:
            return [
                record
                for message in self.decoded
                for resource_logs in message.resource_logs
                for scope_logs in resource_logs.scope_logs
                for record in scope_logs.log_records
            ]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[LogRecord]:
        """Wait (bounded) until ``count`` records have arrived; return them all."""
        with self._lock:
            self.arrived.wait_for(
                lambda: (
                    sum(
                        len(s.log_records)
                        for m in self.decoded
                        for r in m.resource_logs
                        for s in r.scope_logs
                    )
                    >= count
                    or bool(self.errors)
                ),
                timeout,
            )
        return self.records()

    def __enter__(self) -> OtlpReceiver:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


def value_of(value: AnyValue) -> Any:
    """A plain Python value from an ``AnyValue`` (for assertions)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes_of(owner: Any) -> dict[str, Any]:
    """A record's or resource's attributes as a dict, asserting each key appears once."""
    keys = [kv.key for kv in owner.attributes]
    assert len(keys) == len(set(keys)), f"duplicate attribute keys: {keys}"
    return {kv.key: value_of(kv.value) for kv in owner.attributes}
