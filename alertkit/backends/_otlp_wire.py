"""OTLP logs on the wire: an ``ExportLogsServiceRequest`` as protobuf or as OTLP/JSON.

Written by hand rather than through the ``opentelemetry-proto`` message classes: the request is a
fixed, small part of the schema (``opentelemetry/proto/collector/logs/v1/logs_service.proto``,
``logs/v1/logs.proto``, ``common/v1/common.proto``), each record is encoded once into bytes that
are then only concatenated, and ``bench/bench_otlp.py`` measures it at several times the speed of
filling the official messages; it also spares users a protobuf runtime. The tests decode every
request with the official classes, so the two cannot drift apart unseen.

A record is first reduced to a :class:`Record` (plain values); :func:`record_protobuf` and
:func:`record_json` encode that. Field numbers are those of the ``.proto`` files; OTLP/JSON uses
lower-camel names, hex trace and span ids, and 64-bit integers as strings.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Nesting deeper than this is sent as the value's text (the policy stage bounds depth already).
_MAX_DEPTH = 16

Attributes = Sequence[tuple[str, Any]]


class Record(NamedTuple):
    """One log record in plain values, ready for either encoding."""

    time_unix_nano: int
    severity_number: int
    severity_text: str
    body: str
    attributes: Attributes
    trace_id: bytes | None = None
    span_id: bytes | None = None


# -- protobuf ---------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    """Base-128 varint; a negative int64 as its two's complement (ten bytes)."""
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:  # two bytes: a record's length, most often
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, sub-messages)."""
    size = len(payload)
    return _varint(number << 3 | 2) + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a file name, say): protobuf wants UTF-8
        return text.encode("utf-8", "replace")


def _text(number: int, text: str) -> bytes:
    return _field(number, _utf8(text))


def _any_value(value: Any, depth: int = 0) -> bytes:
    """An ``AnyValue``: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7."""
    if isinstance(value, str):
        data = _utf8(value)
        size = len(data)
        return b"\n" + (_SMALL[size] if size < 0x80 else _varint(size)) + data
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + _varint(value)
        return _text(1, str(value))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if value is None:
        return b""  # an empty AnyValue: OTLP's null
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            pairs = (_field(1, _key_value(str(k), v, depth + 1)) for k, v in value.items())
            return _field(6, b"".join(pairs))
        if isinstance(value, list | tuple):
            return _field(5, b"".join(_field(1, _any_value(v, depth + 1)) for v in value))
    if isinstance(value, bytes | bytearray):
        return _field(7, bytes(value))
    return _text(1, str(value))


#: Encoded key fields by key: the same few keys come back in every record.
_KEYS: dict[str, bytes] = {}
#: Encoded attributes by (key, type, scalar value): the code location, the tags, the exception
#: type repeat from record to record. Cleared when full, so unique values cannot grow it.
_ATTRIBUTES: dict[tuple[int, str, type, Any], bytes] = {}
_CACHE_SIZE = 4096
_SCALARS = (str, int, bool)  # not floats: -0.0 == 0.0 would share an entry


def _key_value(key: str, value: Any, depth: int = 0) -> bytes:
    head = _KEYS.get(key)
    if head is None:
        head = _text(1, key)
        if len(_KEYS) < _CACHE_SIZE:
            _KEYS[key] = head
    inner = _any_value(value, depth)
    size = len(inner)
    return head + b"\x12" + (_SMALL[size] if size < 0x80 else _varint(size)) + inner


def attributes_protobuf(number: int, attributes: Attributes) -> bytes:
    """Repeated ``KeyValue`` field ``number`` (``attributes`` of a record, resource or scope)."""
    cache = _ATTRIBUTES
    parts = []
    for key, value in attributes:
        kind = type(value)
        if kind in _SCALARS and (kind is not str or len(value) <= 256):
            token = (number, key, kind, value)
            encoded = cache.get(token)
            if encoded is None:
                encoded = _field(number, _key_value(key, value))
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[token] = encoded
        else:
            encoded = _field(number, _key_value(key, value))
        parts.append(encoded)
    return b"".join(parts)


#: Fields 2 and 3 (severity number and text) by their values: a handful, in every record.
_SEVERITIES: dict[tuple[int, str], bytes] = {}


def _severity(number: int, text: str) -> bytes:
    encoded = _SEVERITIES.get((number, text))
    if encoded is None:
        encoded = b"\x10" + _varint(number) + _text(3, text)
        if len(_SEVERITIES) < _CACHE_SIZE:
            _SEVERITIES[number, text] = encoded
    return encoded


def record_protobuf(record: Record) -> bytes:
    """One ``LogRecord`` message (its bytes, without the field tag of the enclosing list)."""
    stamp = _FIXED64.pack(record.time_unix_nano)
    parts = [
        b"\x09",  # 1 time_unix_nano, fixed64
        stamp,
        _severity(record.severity_number, record.severity_text),  # 2 and 3
        _field(5, _any_value(record.body)),  # 5 body: AnyValue{string_value}
        attributes_protobuf(6, record.attributes),
    ]
    if record.trace_id:
        parts.append(_field(9, record.trace_id))
    if record.span_id:
        parts.append(_field(10, record.span_id))
    parts += (b"\x59", stamp)  # 11 observed_time_unix_nano
    return b"".join(parts)


def request_protobuf(resource: bytes, scopes: Sequence[tuple[bytes, Sequence[bytes]]]) -> bytes:
    """An ``ExportLogsServiceRequest`` of one ``ResourceLogs``.

    Args:
        resource: the encoded ``Resource`` (see :func:`resource_protobuf`).
        scopes: per instrumentation scope, its encoded ``InstrumentationScope`` and records.
    """
    scope_logs = b"".join(
        _field(2, _field(1, scope) + b"".join(_field(2, record) for record in records))
        for scope, records in scopes
    )
    return _field(1, _field(1, resource) + scope_logs)


def resource_protobuf(attributes: Attributes) -> bytes:
    return attributes_protobuf(1, attributes)


def scope_protobuf(name: str, version: str) -> bytes:
    return _text(1, name) + (_text(2, version) if version else b"")


#: Bytes a record adds to a request beyond its own: the field tag and a length of up to 5 bytes.
RECORD_OVERHEAD = 6


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def read_fields(data: bytes) -> dict[int, int | bytes]:
    """The top-level fields of a protobuf message (the last of each number), for the two small
    messages a server answers with (``ExportLogsServiceResponse``, ``google.rpc.Status``).

    Raises:
        ValueError: the bytes are not a protobuf message.
    """
    fields: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            fields[number], pos = _read_varint(data, pos)
        elif kind == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            fields[number], pos = data[pos : pos + size], pos + size
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {kind}")
    if pos != len(data):
        raise ValueError("truncated field")
    return fields


# -- OTLP/JSON ----------------------------------------------------------------------------------

_JSON = msgspec.json.Encoder()


def _any_json(value: Any, depth: int = 0) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN"
            if math.isnan(value)
            else ("Infinity" if value > 0 else "-Infinity")
        }
    if value is None:
        return {}
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {
                "kvlistValue": {
                    "values": [_kv_json(str(k), v, depth + 1) for k, v in value.items()]
                }
            }
        if isinstance(value, list | tuple):
            return {"arrayValue": {"values": [_any_json(v, depth + 1) for v in value]}}
    if isinstance(value, bytes | bytearray):
        import base64

        return {"bytesValue": base64.b64encode(bytes(value)).decode()}
    return {"stringValue": str(value)}


def _kv_json(key: str, value: Any, depth: int = 0) -> dict[str, Any]:
    return {"key": key, "value": _any_json(value, depth)}


def attributes_json(attributes: Attributes) -> list[dict[str, Any]]:
    return [_kv_json(key, value) for key, value in attributes]


def record_json(record: Record) -> bytes:
    """One ``LogRecord`` as OTLP/JSON bytes."""
    data: dict[str, Any] = {
        "timeUnixNano": str(record.time_unix_nano),
        "observedTimeUnixNano": str(record.time_unix_nano),
        "severityNumber": record.severity_number,
        "severityText": record.severity_text,
        "body": {"stringValue": record.body},
        "attributes": attributes_json(record.attributes),
    }
    if record.trace_id:
        data["traceId"] = record.trace_id.hex()
    if record.span_id:
        data["spanId"] = record.span_id.hex()
    return _JSON.encode(data)


def request_json(resource: bytes, scopes: Sequence[tuple[bytes, Sequence[bytes]]]) -> bytes:
    """An ``ExportLogsServiceRequest`` as OTLP/JSON from JSON fragments (resource, scopes,
    records), joined without decoding them again."""
    scope_logs = b",".join(
        b'{"scope":' + scope + b',"logRecords":[' + b",".join(records) + b"]}"
        for scope, records in scopes
    )
    return b'{"resourceLogs":[{"resource":' + resource + b',"scopeLogs":[' + scope_logs + b"]}]}"


def resource_json(attributes: Attributes) -> bytes:
    return _JSON.encode({"attributes": attributes_json(attributes)})


def scope_json(name: str, version: str) -> bytes:
    return _JSON.encode({"name": name, "version": version} if version else {"name": name})
