"""Sentry and GlitchTip: each event as a Sentry event item in an envelope, sent to the DSN's project.

``POST {scheme}://{host}{prefix}/api/{project_id}/envelope/`` with ``Content-Type:
application/x-sentry-envelope`` and ``X-Sentry-Auth: Sentry sentry_key=..., sentry_version=7``.
An envelope is three lines: its header (``event_id``, ``sent_at``, ``sdk``), the item header
(``{"type": "event", "length": N}``) and the event JSON. alertkit's event id is the Sentry
``event_id``, so an event replayed from the spool is the same event to Sentry (it keeps the first).

Rate limits are honoured as sentry-sdk's transport does: ``X-Sentry-Rate-Limits``
(``seconds:category;category:scope, ...``) on any answer pauses the categories it names (none
named: all), a 429 without it pauses everything for ``Retry-After`` (default 60 s). Where
sentry-sdk drops the events it holds during a pause, this backend answers ``RetryLater`` until the
pause ends, so they wait in the queue or the spool. A 413 (envelope too large) is rejected for
good; other statuses as for every HTTP backend.

Which URLs mean Sentry: ``sentry://KEY@host/ID`` (https), ``sentry+https://`` and ``sentry+http://``
(a self-hosted Sentry without TLS) always; a plain ``https://KEY@host[/prefix]/ID`` only in the
unambiguous DSN shape (:func:`looks_like_dsn`): a user name (the key), a path ending in a project
number and no ``api_key`` option. The Trakerr-style HTTP backend's URLs have none of the first two
(its key travels as ``?api_key=``), so no URL that worked before changes meaning.
"""

from __future__ import annotations

import re
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import msgspec

from alertkit.backends._http import USER_AGENT, HttpResponse, classify_response, parse_retry_after
from alertkit.backends._message import cut, json_object
from alertkit.backends._redact import masked_url, redact_in_library_logs
from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope, InnerStackTrace
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater
from alertkit.model.stacktrace import safe_str

if TYPE_CHECKING:
    from typing_extensions import Unpack

SDK = {"name": "alertkit.python", "version": USER_AGENT.partition("/")[2]}
#: The envelope item category an event counts against in Sentry's rate limits.
CATEGORY = "error"
#: A 429 without ``Retry-After`` pauses this long, as sentry-sdk does.
DEFAULT_PAUSE = 60.0
MAX_BREADCRUMBS = 100  # sentry-sdk's default max_breadcrumbs
MAX_TAG_VALUE = 200  # Sentry's limit on a tag value
_SCHEMES = {"sentry": "https", "sentry+https": "https", "sentry+http": "http"}
_LEVELS = {"critical": "fatal", "warn": "warning", "log": "info"}
_ENCODER = msgspec.json.Encoder(enc_hook=safe_str)
_HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Dsn:
    """The parts of a DSN ``https://PUBLIC_KEY[:SECRET]@host[:port][/prefix]/PROJECT_ID``."""

    scheme: str
    netloc: str  # host[:port], without the key
    prefix: str  # path before the project id, no trailing slash
    project_id: str
    public_key: str
    secret_key: str | None

    @property
    def envelope_url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}/api/{self.project_id}/envelope/"


def parse_dsn(dsn: object) -> Dsn:
    """Read a DSN (``https://``, ``http://`` or one of the ``sentry`` schemes).

    Raises:
        ConfigError: naming ``dsn``, with the key masked.
    """
    if not isinstance(dsn, str):
        raise ConfigError(f"sentry: dsn must be a string, got {masked_url(dsn)}")
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"sentry: dsn is malformed: {masked_url(dsn)}") from None
    scheme = _SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    project = parts.path.rstrip("/").rpartition("/")
    if scheme not in ("http", "https") or not parts.hostname or not parts.username:
        raise ConfigError(
            "sentry: dsn must look like https://PUBLIC_KEY@host/PROJECT_ID "
            f"(or sentry://...), got {masked_url(dsn)}"
        )
    if not project[2].isdigit():
        raise ConfigError(
            f"sentry: dsn has no project id at the end of its path: {masked_url(dsn)}"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Dsn(
        scheme=scheme,
        netloc=f"{host}:{port}" if port else host,
        prefix=project[0],
        project_id=project[2],
        public_key=unquote(parts.username),
        secret_key=unquote(parts.password) if parts.password else None,
    )


def looks_like_dsn(url: str) -> bool:
    """Whether an ``http(s)://`` URL has the shape only a DSN has (see the module docstring)."""
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
    except ValueError:
        return False
    last = parts.path.rstrip("/").rpartition("/")[2]
    return bool(parts.username) and last.isdigit() and "api_key" not in query


def parse_rate_limits(header: str) -> dict[str | None, float]:
    """``X-Sentry-Rate-Limits`` as ``{category: seconds}`` (None: every category); malformed
    entries are skipped, as sentry-sdk skips them."""
    limits: dict[str | None, float] = {}
    for limit in header.split(","):
        fields = limit.strip().split(":")
        if len(fields) < 2:
            continue
        try:
            seconds = max(0.0, float(fields[0]))
        except ValueError:
            continue
        for category in fields[1].split(";") if fields[1] else [None]:
            limits[category] = max(seconds, limits.get(category, seconds))
    return limits


class SentryBackend(WebBackend):
    """Sends each event to a Sentry (or GlitchTip) project through its envelope endpoint.

    URL forms: the DSN itself (``https://KEY@o1.ingest.sentry.io/42``), ``sentry://KEY@host/42``,
    ``sentry+http://KEY@sentry.internal:9000/42``; options ``timeout``, ``connections``,
    ``verify``, ``name``, ``min_level``, ``environment``, ``release``.

    Args:
        dsn: the project's DSN (Settings → Client Keys).
        environment: the event's ``environment``; default the client's deployment stage.
        release: the event's ``release``; default the client's app version.
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as
            for every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).

    Raises:
        ConfigError: a DSN without key, host or project id, naming ``dsn``.
    """

    default_connections = 2
    scheme = "sentry"
    schemes = tuple(_SCHEMES)
    secret_fields = ("public_key", "secret_key")
    max_batch = 20
    max_concurrency = 2

    def __init__(
        self,
        dsn: str,
        *,
        environment: str | None = None,
        release: str | None = None,
        **options: Unpack[WebOptions],
    ) -> None:
        super().__init__(**options)
        self.dsn = parse_dsn(dsn)
        self.public_key = self.dsn.public_key
        self.secret_key = self.dsn.secret_key
        self.environment = environment
        self.release = release
        self.url = self.dsn.envelope_url
        auth = f"Sentry sentry_key={self.public_key}, sentry_version=7, sentry_client={USER_AGENT}"
        if self.secret_key:  # only old DSNs have one
            auth += f", sentry_secret={self.secret_key}"
        self._headers = {"Content-Type": "application/x-sentry-envelope", "X-Sentry-Auth": auth}
        self._paused: dict[str | None, float] = {}  # category -> time.monotonic() it ends
        self._pause_lock = threading.Lock()
        redact_in_library_logs(self)

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        options = cls._url_options(query, text=("environment", "release"), label="sentry")
        netloc, path = parts.netloc, parts.path
        options["dsn"] = f"{_SCHEMES.get(parts.scheme.lower(), parts.scheme)}://{netloc}{path}"
        return options

    # -- rate limits -----------------------------------------------------------------------------

    def held_back(self) -> RetryLater | None:
        now = time.monotonic()
        with self._pause_lock:
            until = max(self._paused.get(CATEGORY, 0.0), self._paused.get(None, 0.0))
        if until <= now:
            return None
        wait = until - now
        return RetryLater(f"sentry: rate limited by Sentry for {wait:.0f}s more", wait)

    def _pause(self, response: HttpResponse) -> float | None:
        """Record the pauses the answer asks for; return how long an event must wait now."""
        header = response.headers.get("x-sentry-rate-limits")
        if header:
            limits = parse_rate_limits(header)
        elif response.status == 429:
            delay = parse_retry_after(response.headers.get("retry-after"))
            limits = {None: DEFAULT_PAUSE if delay is None else delay}
        else:
            return None
        now = time.monotonic()
        with self._pause_lock:
            for category, seconds in limits.items():
                self._paused[category] = max(now + seconds, self._paused.get(category, 0.0))
        ours = [limits[c] for c in (CATEGORY, None) if c in limits]
        return max(ours) if ours else None

    # -- sending ---------------------------------------------------------------------------------

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        return self.url, self.envelope_body(envelope), self._headers

    def outcome(self, response: HttpResponse) -> Outcome:
        wait = self._pause(response)
        outcome = classify_response(response)
        if isinstance(outcome, Delivered):
            answer = json_object(response.body)
            return Delivered({"status": response.status, "id": answer.get("id")})
        if isinstance(outcome, RetryLater):  # a rate limit's pause wins over Retry-After
            delay = wait if wait is not None else outcome.delay
            if response.status != 429:
                return RetryLater(self.mask(outcome.reason), delay)
            delay = DEFAULT_PAUSE if delay is None else delay
            return RetryLater(self.mask(f"{outcome.reason} (rate limited)"), delay)
        if response.status == 413:
            return Rejected(self.mask(f"{outcome.reason} (envelope over Sentry's size limit)"))
        return Rejected(self.mask(outcome.reason))

    def envelope_body(self, envelope: Envelope) -> bytes:
        """The envelope: its header, the event item's header and the event, one line each."""
        event = _ENCODER.encode(self.event(envelope))
        # No ``sent_at``: the same event makes the same bytes, on every retry and replay.
        header = {"event_id": sentry_event_id(envelope.event_id), "sdk": SDK}
        item = {"type": "event", "length": len(event), "content_type": "application/json"}
        return b"\n".join((_ENCODER.encode(header), _ENCODER.encode(item), event)) + b"\n"

    def event(self, envelope: Envelope) -> dict[str, Any]:
        """The Sentry event payload of ``envelope`` (empty fields left out)."""
        wire = envelope.event
        message = wire.event_message or ""
        level = wire.log_level or "error"
        body: dict[str, Any] = {
            "event_id": sentry_event_id(envelope.event_id),
            "timestamp": (wire.event_time / 1000.0) if wire.event_time else envelope.created,
            "platform": "python",
            "level": _LEVELS.get(level, level),
            "logger": envelope.logger_name,
            "logentry": {"message": envelope.template or message, "formatted": message},
            "release": self.release or wire.context_app_version or self._context.app_version,
            "environment": self.environment
            or wire.deployment_stage
            or self._context.deployment_stage,
            "server_name": wire.context_env_hostname or self._context.hostname,
            "tags": {str(k): cut(str(v), MAX_TAG_VALUE) for k, v in envelope.tags.items()},
            "extra": dict(envelope.details),
            "fingerprint": list(envelope.fingerprint) if envelope.fingerprint else None,
            "sdk": SDK,
        }
        if wire.event_stacktrace:
            body["exception"] = {"values": exception_values(wire.event_stacktrace)}
        if wire.event_user:
            user = wire.event_user
            body["user"] = {"id": user, **({"email": user} if "@" in user else {})}
        if wire.context_url:
            body["request"] = {"url": wire.context_url}
        contexts = {
            "runtime": _present(name=wire.context_env_name, version=wire.context_env_version),
            "os": _present(name=wire.context_app_os, version=wire.context_app_os_version),
            "trace": _present(trace_id=envelope.trace_id, span_id=envelope.span_id, type="trace")
            if envelope.trace_id
            else {},
        }
        body["contexts"] = {k: v for k, v in contexts.items() if v}
        if envelope.breadcrumbs:
            crumbs = envelope.breadcrumbs[-MAX_BREADCRUMBS:]
            values = [breadcrumb(c) for c in crumbs if isinstance(c, dict)]
            body["breadcrumbs"] = {"values": values}
        return {k: v for k, v in body.items() if v not in (None, "", {}, [])}

    def describe(self) -> str:
        return (
            f"{self.dsn.scheme}://{MASK}@{self.dsn.netloc}{self.dsn.prefix}/{self.dsn.project_id}"
        )


def sentry_event_id(event_id: str) -> str:
    """alertkit's event id as Sentry's (32 lowercase hex digits); any other id is mapped to a
    stable UUID, so that a replay still carries the same one."""
    text = event_id.replace("-", "").lower()
    if _HEX32.fullmatch(text):
        return text
    return uuid.uuid5(uuid.NAMESPACE_URL, f"alertkit:{event_id}").hex


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v}


def exception_values(chain: Sequence[InnerStackTrace]) -> list[dict[str, Any]]:
    """alertkit's exception chain (raised first) as Sentry's ``exception.values`` (the first
    cause first, the raised exception last), frames oldest first in each."""
    values = []
    for item in reversed(chain):
        module, _, name = (item.type or "Exception").rpartition(".")
        frames = [
            frame_of(line.file or "", line.function or "?", line.line)
            for line in item.trace_lines or ()
        ]
        value: dict[str, Any] = {"type": name, "value": item.message or ""}
        if module:
            value["module"] = module
        if frames:
            value["stacktrace"] = {"frames": frames}
        values.append(value)
    return values


def frame_of(path: str, function: str, lineno: int | None) -> dict[str, Any]:
    """One Sentry stack frame; ``module``, the relative ``filename`` and ``in_app`` are read
    from the file's place on ``sys.path`` (site-packages and the standard library are not the
    application's)."""
    module, filename, in_app = _place(path)
    frame: dict[str, Any] = {
        "function": function,
        "filename": filename,
        "abs_path": path,
        "lineno": lineno,
        "in_app": in_app,
    }
    if module:
        frame["module"] = module
    return frame


_LIBRARY_DIRS = tuple(
    {str(PurePath(p)) for key in ("stdlib", "platstdlib") if (p := sysconfig.get_paths().get(key))}
)


@lru_cache(maxsize=4096)
def _place(path: str) -> tuple[str | None, str, bool]:
    """``(module, filename relative to its sys.path entry, in_app)`` of a source file."""
    if not path or path.startswith("<"):
        return None, path, not path.startswith("<frozen")
    library = any(part in ("site-packages", "dist-packages") for part in PurePath(path).parts)
    library = library or any(path.startswith(d + "/") for d in _LIBRARY_DIRS)
    roots = sorted((str(PurePath(p)) for p in sys.path if p), key=len, reverse=True)
    for root in roots:
        if path.startswith(root.rstrip("/") + "/"):
            relative = path[len(root.rstrip("/")) + 1 :]
            dotted = relative.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            return (
                dotted if dotted.replace(".", "").replace("_", "").isalnum() else None,
                relative,
                not library,
            )
    return None, path, not library


def breadcrumb(crumb: dict[str, Any]) -> dict[str, Any]:
    """An alertkit breadcrumb as Sentry's breadcrumb interface."""
    level = str(crumb.get("level") or "info").lower()
    out = {
        "type": str(crumb.get("type") or "default"),
        "timestamp": crumb.get("timestamp"),
        "category": crumb.get("category"),
        "message": crumb.get("message"),
        "level": _LEVELS.get(level, level),
        "data": crumb.get("data"),
    }
    return {k: v for k, v in out.items() if v not in (None, "", {})}
