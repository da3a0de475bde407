"""The Trakerr-style event API: one ``POST .../v1/events`` of the AppEvent JSON per event.

WIRE.md section 1: JSON body, ``Accept: application/json``, the key in the body's ``apiKey``; 2xx is
success, anything else carries an ``Error`` body. The event id travels in an ``Idempotency-Key``
header, outside the wire JSON, so that replays can be recognised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlunsplit

import msgspec

from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK, ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope, encode_event

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_URL = "https://www.trakerr.io/api/v1/events"


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
        event = envelope.event
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
