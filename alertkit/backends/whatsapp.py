"""WhatsApp Cloud API: one template message per event, parameters name, date, message and data.

WIRE.md section 4: ``POST https://graph.facebook.com/<version>/<phone_number_id>/messages`` with
``Authorization: Bearer <token>`` and a ``"type": "template"`` body whose body component carries
named text parameters. Business-initiated messages must use an approved template, so the template
(default ``alertkit_alert``) must exist in your WhatsApp Business account with the parameters
``{{name}}``, ``{{date}}``, ``{{message}}`` and ``{{data}}``.

Errors are Graph API errors, ``{"error": {"message", "type", "code", "error_data": {"details"},
"fbtrace_id"}}``, mostly with HTTP 400: the *code* says whether to retry. Throughput and rate limits
(codes 4, 80007, 130429, 131048, 131056) and temporary service errors (1, 2, 131000, 131016,
133004) are retried; the rest (bad token 190, bad template, bad number ...) are permanent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote

from alertkit.backends._http import HttpResponse, parse_retry_after
from alertkit.backends._message import alert_id, cut, json_object, one_line, summarize
from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater

if TYPE_CHECKING:
    from typing_extensions import Unpack

GRAPH_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v23.0"
DEFAULT_TEMPLATE = "alertkit_alert"
#: Graph API error codes that mean "not now" rather than "never".
RETRY_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056, 133004})
_MAX_PARAM = {"name": 200, "date": 40, "message": 600, "data": 400}


class WhatsAppBackend(WebBackend):
    """Sends each event to one WhatsApp number as a template message.

    URL form: ``whatsapp://<token>@<phone_number_id>/<to>`` with options ``template``,
    ``language``, ``details_url``, ``version`` (Graph API version, default ``v23.0``),
    ``endpoint`` (another base URL, for tests), ``timeout``, ``connections``, ``verify``,
    ``name`` and ``min_level``.

    Args:
        api_url: the messages endpoint,
            ``https://graph.facebook.com/<version>/<phone_number_id>/messages``.
        token: a system-user access token with ``whatsapp_business_messaging``.
        to: the recipient's phone number in international form (``+15551234567``).
        template_name: the approved template to send.
        language: the template's language code.
        details_url: where the recipient can read more; ``{alert_id}`` in it is replaced by the
            alert id, otherwise the id follows the URL.
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as
            for every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).

    Raises:
        ConfigError: a missing token or recipient, or a malformed URL.
    """

    default_connections = 2
    storm_controlled = True
    scheme = "whatsapp"
    secret_fields = ("token",)
    max_batch = 20
    max_concurrency = 2

    def __init__(
        self,
        api_url: str,
        token: str,
        to: str,
        template_name: str = DEFAULT_TEMPLATE,
        language: str = "en_US",
        details_url: str | None = None,
        **options: Unpack[WebOptions],
    ) -> None:
        super().__init__(**options)
        self._http_url(
            "whatsapp",
            "api_url",
            api_url,
            "the messages endpoint, "
            "https://graph.facebook.com/<version>/<phone_number_id>/messages",
        )
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("whatsapp: token (the Cloud API access token) is required")
        digits = to.lstrip("+") if isinstance(to, str) else ""
        if not digits.isdigit():
            raise ConfigError(
                "whatsapp: to must be a phone number in international form, e.g. +15551234567"
            )
        for option, value in (("template_name", template_name), ("language", language)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"whatsapp: {option} must be a non-empty string")
        if details_url is not None and not isinstance(details_url, str):
            raise ConfigError("whatsapp: details_url must be a string")
        self.api_url = api_url
        self.token = token
        self.to = digits
        self.template_name = template_name
        self.language = language
        self.details_url = details_url

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        given = cls._url_options(
            query, text=("template", "language", "details_url", "version", "endpoint")
        )
        recipients = [unquote(p) for p in parts.path.split("/") if p]
        token = unquote(parts.username or "")
        phone_id = parts.hostname or ""
        if not token or not phone_id or len(recipients) != 1:
            raise ConfigError("whatsapp: the URL must be whatsapp://<token>@<phone_number_id>/<to>")
        base = (given.pop("endpoint", None) or GRAPH_URL).rstrip("/")
        version = given.pop("version", None) or DEFAULT_VERSION
        options: dict[str, Any] = {
            "api_url": f"{base}/{version}/{phone_id}/messages",
            "token": token,
            "to": recipients[0],
        }
        for key, option in (
            ("template", "template_name"),
            ("language", "language"),
            ("details_url", "details_url"),
        ):
            if given.pop(key, None):
                options[option] = query[key]
        return {**options, **given}

    def data_text(self, envelope: Envelope) -> str:
        """The ``data`` parameter: the details URL and the alert id."""
        ident = alert_id(envelope)
        url = self.details_url
        if url is None and envelope.links:
            url = str(envelope.links[0].get("href") or "") or None
        if url is None:
            return f"alert {ident}"
        if "{alert_id}" in url:
            return url.replace("{alert_id}", ident)
        return f"{url} (alert {ident})"

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        body = json.dumps(self.payload(envelope), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        return self.api_url, body, headers

    def payload(self, envelope: Envelope) -> dict[str, Any]:
        """The Cloud API template message. Template parameters may not hold newlines, tabs or
        runs of spaces, so every value is put on one line."""
        summary = summarize(envelope, app_name=self.app_name)
        values = {
            "name": summary.name,
            "date": summary.time,
            "message": summary.message,
            "data": self.data_text(envelope),
        }
        parameters = [
            {
                "type": "text",
                "parameter_name": key,
                "text": cut(one_line(value), _MAX_PARAM[key]) or "-",
            }
            for key, value in values.items()
        ]
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self.to,
            "type": "template",
            "template": {
                "name": self.template_name,
                "language": {"code": self.language},
                "components": [{"type": "body", "parameters": parameters}],
            },
        }

    def outcome(self, response: HttpResponse) -> Outcome:
        data = json_object(response.body)
        status = response.status
        if 200 <= status < 300:
            messages = data.get("messages")
            first = messages[0] if isinstance(messages, list) and messages else {}
            message_id = first.get("id") if isinstance(first, dict) else None
            return Delivered({"status": status, "message_id": message_id})
        error = json_object(data.get("error"))
        code = error.get("code")
        reason = f"HTTP {status}"
        if code is not None:
            reason += f" (#{code})"
        text = str(error.get("message") or "") or response.text.strip()
        if text:
            reason += f" {text}"
        details = json_object(error.get("error_data")).get("details")
        if details:
            reason += f": {details}"
        reason = self.mask(reason[:500])
        if status in (408, 429) or status >= 500 or code in RETRY_CODES:
            return RetryLater(reason, parse_retry_after(response.headers.get("retry-after")))
        return Rejected(reason)

    def describe(self) -> str:
        return f"{self.api_url} to={self.to} template={self.template_name} token={MASK}"
