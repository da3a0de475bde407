"""OpenTelemetry logs over OTLP/HTTP: many events per ``POST {endpoint}/v1/logs`` to a collector.

WIRE.md section 6. Each batch the worker hands over (up to ``batch_size`` events, held back at
most ``batch_delay`` seconds to fill) becomes one ``ExportLogsServiceRequest`` — split further
when it would pass ``max_request_bytes`` — as protobuf (default) or OTLP/JSON, gzip-compressed.
The mapping follows the logs data model and semantic conventions: severity from the level, body
from the message, ``exception.*``, ``code.*``, the details and tags as attributes, trace and span
ids, and a resource naming the service, its version, environment, host and process.

Answers, as the OTLP specification says: 2xx delivered (a ``partial_success`` rejects its
``rejected_log_records`` for good); 429, 502, 503 and 504 retried after ``Retry-After``; every
other status rejected. The standard ``OTEL_EXPORTER_OTLP_*`` variables are fallbacks for what the
URL and the keyword options leave unsaid (see :func:`resolve_endpoint`, :meth:`OtlpBackend.bind`).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlunsplit

import msgspec

from alertkit.backends import _otlp_wire as wire
from alertkit.backends._http import (
    USER_AGENT,
    HttpResponse,
    TransportError,
    parse_retry_after,
    reason_from_body,
)
from alertkit.backends._options import read_options
from alertkit.backends._otlp_record import severity, to_record
from alertkit.backends._redact import masked_url
from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK, ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "OTLPBackend",
    "OtlpBackend",
    "parse_pairs",
    "resolve_endpoint",
    "severity",
    "to_record",
]

DEFAULT_ENDPOINT = "http://localhost:4318"
LOGS_PATH = "/v1/logs"
#: The statuses the OTLP specification says to retry; every other error status is permanent.
RETRYABLE = frozenset({429, 502, 503, 504})
CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}
#: gRPC's default message limit, which collectors and vendors commonly keep for OTLP/HTTP too.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Bytes of a request kept for what surrounds the records besides the resource: the scopes.
_FRAMING = 512
_SCHEME_WORDS = frozenset({"bearer", "basic", "token", "apikey", "api-key"})


def _sdk_version() -> str:
    """``telemetry.sdk.version``: the installed distribution's, else the user agent's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alertkit")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return USER_AGENT.rpartition("/")[2]


_VERSION = _sdk_version()


def parse_pairs(text: str, source: str) -> dict[str, str]:
    """``k=v,k2=v2`` (the format of ``OTEL_EXPORTER_OTLP_HEADERS`` and ``OTEL_RESOURCE_ATTRIBUTES``),
    values URL-decoded.

    Raises:
        ConfigError: an entry without ``=`` or without a key, naming ``source`` (never the
            value, which may be a key).
    """
    pairs: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key = unquote(key.strip())
        if not sep or not key:
            raise ConfigError(
                f"otlp: {source} must be a list of key=value pairs separated by commas"
            )
        pairs[key] = unquote(value.strip())
    return pairs


def resolve_endpoint(endpoint: str | None, logs_endpoint: str | None) -> str:
    """The URL requests go to, first found: ``logs_endpoint`` as given; ``endpoint`` (a base URL)
    with ``/v1/logs`` appended; ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` as given;
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``/v1/logs`` appended; ``http://localhost:4318/v1/logs``.
    """
    if logs_endpoint:
        return logs_endpoint
    if endpoint:
        return _signal_url(endpoint)
    logs = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip()
    if logs:
        return logs
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return _signal_url(base or DEFAULT_ENDPOINT)


def _signal_url(base: str) -> str:
    path = base.rstrip("/")
    return path if path.endswith(LOGS_PATH) else path + LOGS_PATH


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_batching(batch_size: object, batch_delay: object, max_request_bytes: object) -> None:
    """Refuse batching options out of range.

    Raises:
        ConfigError: naming the option.
    """
    if not _whole(batch_size) or batch_size < 1:  # type: ignore[operator]
        raise ConfigError("otlp: batch_size must be a whole number of at least 1")
    number = isinstance(batch_delay, int | float) and not isinstance(batch_delay, bool)
    if not number or not 0 <= batch_delay <= 60:  # type: ignore[operator]
        raise ConfigError("otlp: batch_delay must be a number of seconds from 0 to 60")
    if not _whole(max_request_bytes) or max_request_bytes < 4096:  # type: ignore[operator]
        raise ConfigError("otlp: max_request_bytes must be a whole number of at least 4096")


def _headers(explicit: Mapping[str, str] | None) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``, then ``OTEL_EXPORTER_OTLP_LOGS_HEADERS``, then ``explicit``,
    merged key by key (the later wins).

    Raises:
        ConfigError: a malformed variable, or a value that is not one line of text.
    """
    merged = parse_pairs(
        os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""), "OTEL_EXPORTER_OTLP_HEADERS"
    )
    logs = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "")
    merged.update(parse_pairs(logs, "OTEL_EXPORTER_OTLP_LOGS_HEADERS"))
    merged.update(explicit or {})
    for key, value in merged.items():
        if not isinstance(value, str) or any(c in key + value for c in "\r\n"):
            raise ConfigError(f"otlp: headers: the value of {key!r} must be one line of text")
    return merged


class OtlpBackend(WebBackend):
    """Sends events as OpenTelemetry log records to an OTLP/HTTP receiver (a Collector, or a
    vendor's OTLP endpoint): ``otlp://collector:4318``, ``otlps://otlp.example.com``.

    Args:
        endpoint: the receiver's base URL (``http://collector:4318``); ``/v1/logs`` is appended.
            Default: the ``OTEL_EXPORTER_OTLP_*`` variables, else ``http://localhost:4318``.
        logs_endpoint: the full URL of the logs endpoint, used as given (wins over ``endpoint``).
        encoding: ``"protobuf"`` (default) or ``"json"``.
        compression: ``"gzip"`` (default) or ``"none"``.
        headers: extra request headers (an API key); their values are secrets, masked everywhere.
        service_name: the resource's ``service.name`` (default: ``OTEL_SERVICE_NAME``, then
            ``OTEL_RESOURCE_ATTRIBUTES``, then the client's ``app_name``).
        resource_attributes: more resource attributes; they win over every other source.
        batch_size: the most events in one request (default 512, as the OpenTelemetry SDK).
        batch_delay: seconds a partial batch may wait for more events (default 0.2).
        max_request_bytes: the largest request before compression (default 4 MiB); a bigger
            batch is split, and a single event bigger than this is rejected.
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as for
            every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).

    Raises:
        ConfigError: an option (or an ``OTEL_*`` variable) with a wrong value, naming it.
    """

    scheme = "otlp"
    schemes = ("otlp", "otlps")
    max_batch = 512
    batch_delay = 0.2
    max_concurrency = 2
    default_connections = 2
    # An OpenTelemetry log record has no place for a trail (see to_record): a client sending
    # only here makes none.
    sends_breadcrumbs = False

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        logs_endpoint: str | None = None,
        encoding: str = "protobuf",
        compression: str = "gzip",
        headers: Mapping[str, str] | None = None,
        service_name: str | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
        batch_size: int = 512,
        batch_delay: float = 0.2,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        **options: Unpack[WebOptions],
    ) -> None:
        super().__init__(**options)
        if encoding not in CONTENT_TYPES:
            raise ConfigError(f"otlp: encoding must be protobuf or json, got {encoding!r}")
        if compression not in ("gzip", "none"):
            raise ConfigError(f"otlp: compression must be gzip or none, got {compression!r}")
        _check_batching(batch_size, batch_delay, max_request_bytes)
        for option, value in (("endpoint", endpoint), ("logs_endpoint", logs_endpoint)):
            if value is not None:
                self._http_url("otlp", option, value, "http://collector:4318")
        self.url = self._http_url(
            "otlp",
            "endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)",
            resolve_endpoint(endpoint, logs_endpoint),
        )
        self.encoding = encoding
        self.compression = compression
        self.max_batch = batch_size
        self.batch_delay = float(batch_delay)
        self.max_request_bytes = max_request_bytes
        merged = _headers(headers)
        self.headers = merged
        self._request_headers = {
            **merged,
            "Content-Type": CONTENT_TYPES[encoding],
            **({"Content-Encoding": "gzip"} if compression == "gzip" else {}),
        }
        # The resource: explicit options, then the OTEL_* variables, then the client (bind).
        self._env_resource: dict[str, Any] = parse_pairs(
            os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""), "OTEL_RESOURCE_ATTRIBUTES"
        )
        service = os.environ.get("OTEL_SERVICE_NAME", "").strip()
        if service:
            self._env_resource["service.name"] = service
        self._own_resource = dict(resource_attributes or {})
        if service_name:
            self._own_resource["service.name"] = service_name
        self._resource = self._resource_from(ClientContext())
        self._resource_pid = -1
        self._resource_bytes = b""

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        options = read_options(
            "otlp",
            query,
            text=("encoding", "compression", "headers", "service_name", "resource"),
            number=("timeout", "batch_delay"),
            count=("connections", "batch_size", "max_request_bytes"),
            flag=("verify",),
            secret=("headers",),
        )
        if "headers" in options:
            options["headers"] = parse_pairs(options["headers"], "headers")
        if "resource" in options:
            options["resource_attributes"] = parse_pairs(options.pop("resource"), "resource")
        if parts.username or parts.password:
            raise ConfigError(
                "otlp: credentials in the URL are not used; send them as ?headers=name=value"
            )
        if parts.hostname:
            secure = parts.scheme.lower() == "otlps"
            try:
                port = parts.port or (443 if secure else 4318)
            except ValueError:
                raise ConfigError("otlp: the URL's port must be a number") from None
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            options["endpoint"] = urlunsplit(
                ("https" if secure else "http", f"{host}:{port}", parts.path, "", "")
            )
        return options

    def bind(self, context: ClientContext) -> None:
        """Take the client's timeout and pool size, and its name, version, stage and host for
        the resource where neither the options nor the ``OTEL_*`` variables say."""
        super().bind(context)
        self._resource = self._resource_from(context)
        self._resource_pid = -1

    def _resource_from(self, context: ClientContext) -> list[tuple[str, Any]]:
        """The resource attributes: the client's values, overridden by ``OTEL_RESOURCE_ATTRIBUTES``
        and ``OTEL_SERVICE_NAME``, overridden by the backend's own options; ``telemetry.sdk.*``
        always name alertkit (``process.pid`` is added per process)."""
        stage = context.deployment_stage
        resource: dict[str, Any] = {
            "service.name": context.app_name,
            "service.version": context.app_version,
            "deployment.environment": stage,
            "deployment.environment.name": stage,
            "host.name": context.hostname,
        }
        resource = {k: v for k, v in resource.items() if v}
        resource.update(self._env_resource)
        resource.update(self._own_resource)
        resource.setdefault("service.name", "unknown_service:python")
        resource["telemetry.sdk.name"] = "alertkit"
        resource["telemetry.sdk.version"] = _VERSION
        resource["telemetry.sdk.language"] = "python"
        return list(resource.items())

    def _resource_for_request(self) -> bytes:
        """The encoded resource, with this process's pid (rebuilt in a forked child)."""
        pid = os.getpid()
        if pid != self._resource_pid:
            attributes = [*self._resource, ("process.pid", pid)]
            encode = wire.resource_protobuf if self.encoding == "protobuf" else wire.resource_json
            self._resource_bytes, self._resource_pid = encode(attributes), pid
        return self._resource_bytes

    # -- sending ----------------------------------------------------------------------------------

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        protobuf = self.encoding == "protobuf"
        encode = wire.record_protobuf if protobuf else wire.record_json
        limit = self.max_request_bytes - len(self._resource_for_request()) - _FRAMING
        encoded: list[tuple[int, str, bytes]] = []
        for index, envelope in enumerate(batch):
            try:
                data = encode(to_record(envelope))
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
                outcomes[index] = Rejected(self.mask(f"otlp: cannot encode the event: {exc}"))
                continue
            if len(data) > limit:
                outcomes[index] = Rejected(
                    f"otlp: the event's record is {len(data)} bytes, over max_request_bytes"
                )
                continue
            encoded.append((index, envelope.logger_name or "alertkit", data))
        chunks: list[list[tuple[int, str, bytes]]] = [[]]
        size = 0
        for item in encoded:
            if chunks[-1] and size + len(item[2]) + wire.RECORD_OVERHEAD > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += len(item[2]) + wire.RECORD_OVERHEAD
        for position, chunk in enumerate(chunks):
            if not chunk:
                continue
            try:
                response = self._client().post(self.url, self._body(chunk), self._request_headers)
            except TransportError as exc:  # the rest would wait out the same failure
                failed = RetryLater(self.mask(str(exc)))
                for rest in chunks[position:]:
                    for index, _, _ in rest:
                        outcomes[index] = failed
                break
            answers = self._answers(response, len(chunk))
            for (index, _, _), outcome in zip(chunk, answers, strict=True):
                outcomes[index] = outcome
            if response.status in RETRYABLE:  # unavailable or rate limited: so is the rest
                for rest in chunks[position + 1 :]:
                    for index, _, _ in rest:
                        outcomes[index] = answers[0]
                break
        return [o if o is not None else RetryLater("otlp: not sent") for o in outcomes]

    def _body(self, chunk: Sequence[tuple[int, str, bytes]]) -> bytes:
        """The request of ``chunk``: one scope per logger name, records in capture order."""
        scopes: dict[str, list[bytes]] = {}
        for _, scope, data in chunk:
            scopes.setdefault(scope, []).append(data)
        encode_scope = wire.scope_protobuf if self.encoding == "protobuf" else wire.scope_json
        request = wire.request_protobuf if self.encoding == "protobuf" else wire.request_json
        body = request(
            self._resource_for_request(),
            [(encode_scope(name, ""), records) for name, records in scopes.items()],
        )
        if self.compression == "gzip":
            packer = zlib.compressobj(
                1, zlib.DEFLATED, 31
            )  # level 1: 2x faster than 6, ~10% larger; 31: gzip, mtime 0
            body = packer.compress(body) + packer.flush()
        return body

    def _answers(self, response: HttpResponse, count: int) -> list[Outcome]:
        """One outcome per record of a request, from the receiver's answer."""
        status = response.status
        if 200 <= status < 300:
            rejected, message = self._partial_success(response)
            delivered: Outcome = Delivered({"status": status})
            if not rejected:
                return [delivered] * count
            rejected = min(rejected, count)
            # OTLP gives the count, not which records: the last ones are marked (documented).
            reason: Outcome = Rejected(
                self.mask(
                    f"otlp: the receiver rejected {rejected} of {count} records"
                    + (f": {message}" if message else "")
                )
            )
            return [delivered] * (count - rejected) + [reason] * rejected
        reason_text = self.mask(self._error_reason(response))
        if status in RETRYABLE:
            delay = parse_retry_after(response.headers.get("retry-after"))
            return [RetryLater(reason_text, delay)] * count
        return [Rejected(reason_text)] * count

    def _partial_success(self, response: HttpResponse) -> tuple[int, str]:
        """``(rejected_log_records, error_message)`` of an ``ExportLogsServiceResponse``; (0, "")
        when the body is empty or unreadable (the records were accepted: it said 2xx)."""
        body = response.body
        if not body:
            return 0, ""
        try:
            if "json" in response.headers.get("content-type", CONTENT_TYPES[self.encoding]):
                data = msgspec.json.decode(body)
                partial = data.get("partialSuccess") or data.get("partial_success") or {}
                count = partial.get("rejectedLogRecords", partial.get("rejected_log_records", 0))
                return int(count or 0), str(
                    partial.get("errorMessage") or partial.get("error_message") or ""
                )
            partial_bytes = wire.read_fields(body).get(1, b"")
            fields = wire.read_fields(partial_bytes) if isinstance(partial_bytes, bytes) else {}
            count = fields.get(1, 0)
            message = fields.get(2, b"")
            return (
                int(count) if isinstance(count, int) else 0,
                message.decode("utf-8", "replace") if isinstance(message, bytes) else "",
            )
        except (ValueError, TypeError, AttributeError, msgspec.DecodeError):
            return 0, ""

    @staticmethod
    def _error_reason(response: HttpResponse) -> str:
        """``HTTP 400 from host:port: message``, the message from a ``google.rpc.Status`` body
        (protobuf or JSON) or the text."""
        if "protobuf" in response.headers.get("content-type", ""):
            try:
                message = wire.read_fields(response.body).get(2, b"")
            except ValueError:
                message = b""
            if isinstance(message, bytes) and message:
                text = message.decode("utf-8", "replace")[:500]
                return f"HTTP {response.status} from {response.origin}: {text}"
            return f"HTTP {response.status} from {response.origin}"
        return reason_from_body(response)

    # -- safe description -------------------------------------------------------------------------

    def mask(self, text: str) -> str:
        """Every header value (and each word of it, for ``Bearer <token>``) replaced by ``****``."""
        for value in self.headers.values():
            if len(value) >= 4:
                text = text.replace(value, MASK)
            for word in value.split():
                if len(word) >= 4 and word.lower() not in _SCHEME_WORDS:
                    text = text.replace(word, MASK)
        return text

    def describe(self) -> str:
        shown = (
            f" headers={','.join(f'{key}={MASK}' for key in self.headers)}" if self.headers else ""
        )
        return f"{masked_url(self.url)} {self.encoding}/{self.compression}{shown}"


#: The spelling of OpenTelemetry's own classes (``OTLPLogExporter``), for those who reach for it.
OTLPBackend = OtlpBackend
