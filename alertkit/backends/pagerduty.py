"""PagerDuty Events API v2: triggers from events, acknowledge/resolve/change from the lifecycle API.

WIRE.md section 2. Every body fits PagerDuty's limits before it leaves: ``summary`` at most 1024
characters, ``dedup_key`` at most 255 (a longer key is replaced by a stable hash, so a trigger and
its resolve still meet), the whole body at most 512 KB (``custom_details`` values trimmed, largest
first, with a marker naming what was cut). A v1 ``service_key`` is accepted and sent through v2.

Envelope kinds and what their ``payload`` holds (built by :mod:`alertkit.capture.incidents`):

* ``"event"``: a trigger built from the event; ``payload`` is normally None. When set (the bridge
  does), its keys ``summary``, ``source``, ``severity``, ``client`` and ``client_url`` override
  the values computed from the event.
* ``"acknowledge"`` / ``"resolve"``: ``{"dedup_key": str}``.
* ``"change"``: ``{"summary": str, "source": str | None, "timestamp": ISO 8601 str | None,
  "custom_details": dict | None, "links": [{"href", "text"}]}``, sent to ``/v2/change/enqueue``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote

import msgspec

from alertkit.backends._http import HttpResponse, classify_response
from alertkit.backends._message import cut
from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.grouping import fingerprint_text
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater
from alertkit.model.stacktrace import render_stacktrace, safe_str

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("alertkit.backends.pagerduty")

DEFAULT_ENDPOINT = "https://events.pagerduty.com/v2/enqueue"
REGION_HOSTS = {"us": "events.pagerduty.com", "eu": "events.eu.pagerduty.com"}
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_BODY = 512 * 1024
KEY_LENGTH = 32
SEVERITIES = ("critical", "error", "warning", "info")
_SEVERITY = {
    "fatal": "critical",
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "info": "info",
    "debug": "info",
}
_OVERRIDES = ("summary", "source", "severity", "client", "client_url")
_URL_OPTIONS = (
    "endpoint",
    "change_endpoint",
    "source",
    "component",
    "group",
    "event_class",
    "incident_key",
    "client",
    "client_url",
    "region",
    "service_key",
    "service_id",
)
_ENCODER = msgspec.json.Encoder(enc_hook=safe_str)


def stable_dedup_key(key: str) -> str:
    """``key`` itself when PagerDuty takes it (at most 255 characters), else a stable hash of it."""
    if len(key) <= MAX_DEDUP_KEY:
        return key
    return "alertkit-sha256-" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def iso_timestamp(millis: float) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (``2026-11-22T15:04:05.123+00:00``)."""
    when = datetime.fromtimestamp(millis / 1000.0, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds")


def _one_key(routing_key: str | None, service_key: str | None, service_id: str | None) -> str:
    """The one integration key given (a v2 routing key or a v1 service key), checked.

    Raises:
        ConfigError: none or several given, or one that is not 32 letters and digits; the error
            says its length, never the key.
    """
    keys = {k for k in (routing_key, service_key, service_id) if k}
    if len(keys) > 1:
        raise ConfigError("pagerduty: give one of routing_key, service_key, service_id")
    key = keys.pop() if keys else ""
    if not key:
        raise ConfigError("pagerduty: routing_key (or v1 service_key) is required")
    if not isinstance(key, str) or len(key) != KEY_LENGTH or not key.isalnum():
        length = len(key) if isinstance(key, str) else 0
        raise ConfigError(
            "pagerduty: routing_key must be the 32-character integration key "
            f"(letters and digits), got {length} characters"
        )
    return key


class PagerDutyBackend(WebBackend):
    """Sends events to a PagerDuty service through the Events API v2 (``pagerduty://ROUTING_KEY``).

    Args:
        routing_key: the 32-character integration key of an Events API v2 integration.
        endpoint: the enqueue URL (tests and proxies); default the US host, or ``region``'s.
        change_endpoint: where change events go; default ``endpoint`` with ``/change`` before
            its final ``/enqueue``.
        source: ``payload.source``; default the event's host name.
        component: ``payload.component``; default the logger name.
        group: ``payload.group``; default the deployment stage.
        event_class: ``payload.class``; default the event type.
        incident_key: one dedup key for every trigger of this backend.
        client: ``client`` shown on the alert; default ``"alertkit"``.
        client_url: ``client_url`` shown on the alert.
        region: ``"us"`` (default) or ``"eu"`` picks the host of the default endpoint.
        service_key: a v1 integration key (the ``pagerdutyapi`` vocabulary), used as the routing
            key; with it, a 403 means rate limited as in Events API v1.
        service_id: the same as ``service_key`` (the seed's ``dictConfig`` spelling).
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as
            for every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).

    Raises:
        ConfigError: no key or a key that is not 32 characters, both endpoint and region,
            an unknown region, an endpoint that is not http(s).
    """

    default_connections = 2
    scheme = "pagerduty"
    secret_fields = ("routing_key",)
    kinds = frozenset({"event", "acknowledge", "resolve", "change"})
    max_batch = 20
    # One sender keeps a trigger before its resolve; PagerDuty takes ~120 events/min anyway.
    max_concurrency = 1
    ordered = True
    # PagerDuty allows about 120 events a minute per routing key: pace rather than collect 429s.
    rate_limit: tuple[int, float] | None = (120, 60.0)

    def __init__(
        self,
        routing_key: str | None = None,
        *,
        endpoint: str | None = None,
        change_endpoint: str | None = None,
        source: str | None = None,
        component: str | None = None,
        group: str | None = None,
        event_class: str | None = None,
        incident_key: str | None = None,
        client: str | None = None,
        client_url: str | None = None,
        region: str | None = None,
        service_key: str | None = None,
        service_id: str | None = None,
        **options: Unpack[WebOptions],
    ) -> None:
        super().__init__(**options)
        self.routing_key = _one_key(routing_key, service_key, service_id)
        self.v1_key = not routing_key
        self.endpoint, self.change_endpoint = self._endpoints(endpoint, change_endpoint, region)
        self.source = source
        self.component = component
        self.group = group
        self.event_class = event_class
        self.incident_key = incident_key
        self.client = client or "alertkit"
        self.client_url = client_url
        self.region = region

    def _endpoints(
        self, endpoint: str | None, change_endpoint: str | None, region: str | None
    ) -> tuple[str, str]:
        """The enqueue and change URLs: given, or the region's host (US by default); the change
        URL defaults to the enqueue URL with ``/change`` before its final ``/enqueue``.

        Raises:
            ConfigError: an unknown region, both an endpoint and a region, a URL not http(s).
        """
        if region is not None and region.lower() not in REGION_HOSTS:
            raise ConfigError(
                f"pagerduty: region must be one of {', '.join(REGION_HOSTS)}, got {region!r}"
            )
        if region is not None and endpoint is not None:
            raise ConfigError("pagerduty: give endpoint or region, not both")
        if endpoint is None:
            endpoint = f"https://{REGION_HOSTS[(region or 'us').lower()]}/v2/enqueue"
        self._http_url("pagerduty", "endpoint", endpoint)
        if change_endpoint is not None:
            return endpoint, self._http_url("pagerduty", "change_endpoint", change_endpoint)
        base = endpoint.rstrip("/").removesuffix("/enqueue")
        return endpoint, base + "/change/enqueue"

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        options = cls._url_options(query, text=_URL_OPTIONS, secret=("service_key", "service_id"))
        key = unquote(parts.netloc + parts.path).strip("/")
        if key:
            options["routing_key"] = key
        return options

    # -- sending -------------------------------------------------------------------------------

    def outcome(self, response: HttpResponse) -> Outcome:
        outcome = classify_response(response)
        if isinstance(outcome, Delivered):
            info: dict[str, Any] = {"status": response.status}
            try:
                data = msgspec.json.decode(response.body) if response.body else {}
            except msgspec.DecodeError:
                data = {}
            if isinstance(data, dict):
                info.update({k: data[k] for k in ("dedup_key", "message") if k in data})
            return Delivered(info)
        if response.status == 403 and self.v1_key:  # Events API v1: 403 means rate limited
            return RetryLater(self.mask(f"HTTP 403 rate limited (v1 key) {response.text[:200]}"))
        if isinstance(outcome, RetryLater):
            return RetryLater(self.mask(outcome.reason), outcome.delay)
        return Rejected(self.mask(outcome.reason))

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        url, body = self.request_for(envelope)
        return url, body, {"Content-Type": "application/json", "Accept": "application/json"}

    def rate_limited(self, response: HttpResponse) -> bool:
        return response.status in (403, 429)  # v1 answers a rate limit with 403

    def request_for(self, envelope: Envelope) -> tuple[str, bytes]:
        """The URL and JSON body for one envelope, within PagerDuty's limits.

        Raises:
            ValueError: a lifecycle envelope without its dedup key or summary.
        """
        payload = envelope.payload or {}
        if envelope.kind in ("acknowledge", "resolve"):
            key = payload.get("dedup_key")
            if not isinstance(key, str) or not key:
                raise ValueError(f"{envelope.kind} needs payload['dedup_key']")
            body = {
                "routing_key": self.routing_key,
                "event_action": envelope.kind,
                "dedup_key": stable_dedup_key(key),
            }
            return self.endpoint, _ENCODER.encode(body)
        if envelope.kind == "change":
            return self.change_endpoint, self._fit(self._change_body(payload))
        return self.endpoint, self._fit(self.trigger_body(envelope))

    def dedup_key(self, envelope: Envelope) -> str:
        """The seed handler's rule: the backend's key, else the envelope's (handler option or
        ``extra``), else the fingerprint the application chose (its parts joined by ``/``), else
        the logger name and the unformatted template."""
        key = self.incident_key or envelope.incident_key
        if not key and envelope.fingerprint:
            key = fingerprint_text(envelope.fingerprint)
        if not key:
            event = envelope.event
            if envelope.template is not None:
                key = f"{envelope.logger_name or 'root'}:{envelope.template}"
            else:
                key = f"{event.event_type}:{event.event_message}"
        return stable_dedup_key(key)

    def trigger_body(self, envelope: Envelope) -> dict[str, Any]:
        """The v2 trigger body of an event (before the 512 KB fit)."""
        event = envelope.event
        over = {
            k: v
            for k, v in (envelope.payload or {}).items()
            if k in _OVERRIDES and isinstance(v, str) and v
        }
        lines = (event.event_message or "").strip().splitlines()
        first = lines[0] if lines else ""
        summary = over.get("summary") or (
            first
            if event.event_type in ("", "unknown") or first.startswith(event.event_type)
            else f"{event.event_type}: {first}"
        )
        severity = over.get("severity")
        if severity not in SEVERITIES:
            severity = _SEVERITY.get(event.log_level or "", "error")
        millis = event.event_time or envelope.created * 1000
        payload: dict[str, Any] = {
            "summary": cut(summary or "event", MAX_SUMMARY),
            "source": over.get("source")
            or self.source
            or event.context_env_hostname
            or self._context.hostname
            or "unknown",
            "severity": severity,
            "timestamp": iso_timestamp(millis),
        }
        optional = {
            "component": self.component or envelope.logger_name,
            "group": self.group or event.deployment_stage or None,
            "class": self.event_class or event.event_type,
        }
        payload.update({k: v for k, v in optional.items() if v})
        payload["custom_details"] = self._details(envelope, payload["summary"])
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": self.dedup_key(envelope),
            "payload": payload,
            "client": over.get("client") or self.client,
        }
        client_url = over.get("client_url") or self.client_url
        if client_url:
            body["client_url"] = client_url
        links = _links(envelope.links)
        images = self._images(envelope.images)
        if links:
            body["links"] = links
        if images:
            body["images"] = images
        return body

    def _details(self, envelope: Envelope, summary: str) -> dict[str, Any]:
        """The ``extra`` fields, then what alertkit adds; an extra field whose name alertkit
        uses for this event is kept as ``extra.<name>``."""
        event = envelope.event
        message = event.event_message or ""
        own: dict[str, Any] = {
            "message": message if message != summary else None,
            "custom_data": _custom(event.custom_properties),
            "custom_segments": _custom(event.custom_segments),
            "app_version": event.context_app_version,
            "stack_trace": render_stacktrace(event.event_stacktrace) or envelope.exc_text,
            "tags": dict(envelope.tags),
            "user": event.event_user,
            "url": event.context_url,
            "request_log": envelope.request_log,
            "trace_id": envelope.trace_id,
            "span_id": envelope.span_id,
            "breadcrumbs": list(envelope.breadcrumbs),
            "fingerprint": list(envelope.fingerprint or ()),
        }
        own = {k: v for k, v in own.items() if v}
        details = {f"extra.{k}" if k in own else str(k): v for k, v in envelope.details.items()}
        details.update(own)
        return details

    def _change_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary:
            raise ValueError("change needs payload['summary']")
        inner: dict[str, Any] = {
            "summary": cut(summary, MAX_SUMMARY),
            "source": payload.get("source") or self.source or self._context.hostname or "unknown",
        }
        if payload.get("timestamp"):
            inner["timestamp"] = str(payload["timestamp"])
        if isinstance(payload.get("custom_details"), dict):
            inner["custom_details"] = dict(payload["custom_details"])
        body: dict[str, Any] = {"routing_key": self.routing_key, "payload": inner}
        links = _links(payload.get("links") or [])
        if links:
            body["links"] = links
        return body

    def _images(self, images: Sequence[dict[str, str]]) -> list[dict[str, str]]:
        kept = []
        for image in images:
            src = image.get("src") or ""
            if not src.lower().startswith("https://"):
                log.warning(
                    "%s: image dropped: PagerDuty shows only https images, got src %r",
                    self.name,
                    self.mask(src[:200]),
                )
                continue
            kept.append({k: image[k] for k in ("src", "href", "alt") if image.get(k)})
        return kept

    def _fit(self, body: dict[str, Any]) -> bytes:
        """Encode ``body``; over 512 KB, cut ``custom_details`` values, largest first."""
        data = _ENCODER.encode(body)
        if len(data) <= MAX_BODY:
            return data
        holder = body.get("payload", {})
        details = holder.get("custom_details")
        if isinstance(details, dict) and details:
            sizes = sorted(((len(_ENCODER.encode(v)), k) for k, v in details.items()), reverse=True)
            trimmed: list[str] = []
            for size, key in sizes:
                details[key] = f"[cut by alertkit: {size} bytes over PagerDuty's 512 KB limit]"
                trimmed.append(key)
                details["alertkit_cut"] = trimmed
                data = _ENCODER.encode(body)
                if len(data) <= MAX_BODY:
                    return data
        for extra in ("images", "links"):
            if body.pop(extra, None) is not None:
                data = _ENCODER.encode(body)
                if len(data) <= MAX_BODY:
                    return data
        raise ValueError("the body is over 512 KB even without custom details and links")

    # -- description -----------------------------------------------------------------------------

    def describe(self) -> str:
        text = f"pagerduty://{MASK}"
        if self.endpoint != DEFAULT_ENDPOINT:
            text += f"?endpoint={self.endpoint}"
        return text


def _links(links: Sequence[Any]) -> list[dict[str, str]]:
    kept = []
    for link in links:
        if isinstance(link, dict) and link.get("href"):
            kept.append({k: str(link[k]) for k in ("href", "text") if link.get(k)})
    return kept


def _custom(data: Any) -> dict[str, Any]:
    """``CustomData`` as ``{"customData1": "checkout", ...}`` (string and double data together)."""
    if data is None:
        return {}
    flat: dict[str, Any] = {}
    for part in (data.string_data, data.double_data):
        if part is not None:
            flat.update(msgspec.to_builtins(part))
    return flat
