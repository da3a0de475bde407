"""Slack incoming webhooks: one Block Kit message per event, with a plain ``text`` fallback.

WIRE.md section 4: ``POST <webhook_url>`` with JSON ``{"text": ..., "blocks": [...]}``. Slack
answers 200 ``ok``; 4xx with a short text reason (``invalid_payload``, ``no_service`` for a revoked
webhook, ``channel_not_found``, ``channel_is_archived`` ...), which is permanent; 429 with
``Retry-After``; 5xx, which is retried. The webhook URL's path is the secret: whoever has it can
post to the channel, so it is masked in ``repr()`` and in every reason.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit

from alertkit.backends._http import HttpResponse
from alertkit.backends._message import cut, render_text, slack_blocks, slack_escape, summarize
from alertkit.backends._redact import redact_in_library_logs
from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_HOST = "hooks.slack.com"
_MAX_TEXT = 3000


class SlackBackend(WebBackend):
    """Posts each event to a Slack channel through an incoming webhook.

    URL form: ``slack://hooks.slack.com/services/T000/B000/XXXX`` (or the short
    ``slack://T000/B000/XXXX``), options ``?endpoint=`` (another base URL, for tests and proxies),
    ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``.

    Args:
        webhook_url: the full ``https://hooks.slack.com/services/...`` URL Slack gave you.
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as
            for every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).

    Raises:
        ConfigError: the URL is not an http(s) URL with a webhook path.
    """

    default_connections = 2
    storm_controlled = True
    scheme = "slack"
    secret_fields = ("webhook_url", "_webhook_path", "_webhook_token")
    max_batch = 20
    max_concurrency = 2

    def __init__(
        self,
        webhook_url: str,
        **options: Unpack[WebOptions],
    ) -> None:
        super().__init__(**options)
        self._http_url("slack", "webhook_url", webhook_url, "https://hooks.slack.com/services/...")
        parts = urlsplit(webhook_url)
        if not parts.netloc or parts.path.strip("/") == "":
            raise ConfigError(
                "slack: webhook_url has no webhook path "
                "(expected https://hooks.slack.com/services/T.../B.../...)"
            )
        self.webhook_url = webhook_url
        self._webhook_path = parts.path
        self._webhook_token = parts.path.rstrip("/").rpartition("/")[2]
        self._base = f"{parts.scheme}://{parts.netloc}"
        redact_in_library_logs(self)

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        options = cls._url_options(query, text=("endpoint",))
        endpoint = options.pop("endpoint", None)
        host = unquote(parts.netloc)
        path = unquote(parts.path)
        if host and "." not in host:
            # The short form slack://T000/B000/XXXX names the three tokens only.
            path, host = f"/services/{host}{path}", DEFAULT_HOST
        if not host or not path.strip("/"):
            raise ConfigError(
                "slack: the URL needs the webhook path, e.g. "
                "slack://hooks.slack.com/services/T000/B000/XXXX"
            )
        base = endpoint or f"https://{host}"
        options["webhook_url"] = base.rstrip("/") + path
        return options

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        body = json.dumps(self.payload(envelope), ensure_ascii=False).encode("utf-8")
        return self.webhook_url, body, {"Content-Type": "application/json; charset=utf-8"}

    def outcome(self, response: HttpResponse) -> Outcome:
        outcome = super().outcome(response)
        if isinstance(outcome, Delivered):  # Slack answers "ok"
            return Delivered({"status": response.status, "response": response.text.strip()[:100]})
        return outcome

    def payload(self, envelope: Envelope) -> dict[str, Any]:
        """The webhook body: Block Kit blocks and the plain-text fallback Slack shows in
        notifications and in clients that cannot draw blocks."""
        summary = summarize(envelope, app_name=self.app_name)
        text = cut(slack_escape(render_text(summary)), _MAX_TEXT)
        return {"text": text, "blocks": slack_blocks(summary)}

    def describe(self) -> str:
        return f"{self._base}/{MASK}"
