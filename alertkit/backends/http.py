"""The Trakerr-style event API: one ``POST .../v1/events`` of the AppEvent JSON per event.

WIRE.md section 1: JSON body, ``Accept: application/json``, the key in the body's ``apiKey``; 2xx is
success, anything else carries an ``Error`` body. The event id travels in an ``Idempotency-Key``
header, outside the wire JSON, so that replays can be recognised.

The wire format has no field for breadcrumbs. They travel as JSON text (a list of
``{"timestamp", "level", "category", "message", "data"}``, oldest first, the newest that fit in
:data:`MAX_BREADCRUMB_TEXT` characters) in the last free ``customProperties.stringData`` slot,
``customData10`` first and down from there; an event whose ten slots the application filled
carries none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlunsplit

import msgspec

from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK, ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import AppEvent, CustomData, CustomStringData, Envelope, encode_event

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_URL = "https://www.trakerr.io/api/v1/events"
#: The ``customProperties.stringData`` slots breadcrumbs may take, in the order tried.
BREADCRUMB_SLOTS = tuple(f"custom_data{n}" for n in range(10, 0, -1))
#: Characters of breadcrumb JSON put in that slot (the newest crumbs that fit).
MAX_BREADCRUMB_TEXT = 8192
_ENCODER = msgspec.json.Encoder()


def breadcrumb_text(crumbs: Sequence[Any], limit: int = MAX_BREADCRUMB_TEXT) -> str:
    """The newest breadcrumbs whose JSON list fits in ``limit`` characters, oldest first."""
    kept: list[bytes] = []
    size = 2  # the brackets
    for crumb in reversed(crumbs):
        encoded = _ENCODER.encode(crumb)
        if size + len(encoded) + (1 if kept else 0) > limit:
            break
        kept.append(encoded)
        size += len(encoded) + (1 if len(kept) > 1 else 0)
    return (b"[" + b",".join(reversed(kept)) + b"]").decode()


def with_breadcrumbs(event: AppEvent, crumbs: Sequence[Any]) -> AppEvent:
    """``event`` with the breadcrumbs in its last free custom string slot (a copy; the event
    itself when there are none, or no slot is free)."""
    if not crumbs:
        return event
    props = event.custom_properties or CustomData()
    strings = props.string_data or CustomStringData()
    slot = next((name for name in BREADCRUMB_SLOTS if getattr(strings, name) is None), None)
    if slot is None:
        return event
    strings = msgspec.structs.replace(strings, **{slot: breadcrumb_text(crumbs)})
    props = msgspec.structs.replace(props, string_data=strings)
    return msgspec.structs.replace(event, custom_properties=props)


class HttpBackend(WebBackend):
    """POSTs each event's wire JSON to an event API (``https://host/api/v1/events?api_key=KEY``).

    Args:
        url: the events endpoint.
        api_key: the ``apiKey`` to put in the body; default: the client's.
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as
            for every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).
    """

    default_connections = 4
    schemes = ("https", "http")
    secret_fields = ("api_key",)
    max_batch = 50
    max_concurrency = 8

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        **options: Unpack[WebOptions],
    ) -> None:
        options["name"] = options.get("name") or "http"
        super().__init__(**options)
        self.url = self._http_url("http", "url", url)
        self.api_key = api_key

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        options = cls._url_options(query, text=("api_key",), secret=("api_key",), label="http")
        options.setdefault("api_key", None)
        options["url"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return options

    def bind(self, context: ClientContext) -> None:
        super().bind(context)
        if self.api_key is None:
            self.api_key = context.api_key
        if not self.api_key:
            raise ConfigError(
                "http: the event API needs an api_key (Client(api_key=...), ?api_key= in the URL, "
                "or ALERTKIT_API_KEY)"
            )

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        event = with_breadcrumbs(envelope.event, envelope.breadcrumbs)
        if self.api_key and event.api_key != self.api_key:
            event = msgspec.structs.replace(event, api_key=self.api_key)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": envelope.event_id,
        }
        return self.url, encode_event(event), headers

    def describe(self) -> str:
        key = f"?api_key={MASK}" if self.api_key else ""
        return f"{self.url}{key}"
