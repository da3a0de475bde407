"""Telegram bots: one ``sendMessage`` per event, plain text, cut to Telegram's 4096 characters.

WIRE.md section 4: ``POST {api_url}/bot<token>/sendMessage`` with JSON ``{"chat_id", "text"}``.
Telegram answers ``{"ok": true, "result": {"message_id": ...}}``, or ``{"ok": false, "error_code",
"description", "parameters"}``: 429 carries ``parameters.retry_after`` (seconds to wait), a 400
for a group that became a supergroup carries ``parameters.migrate_to_chat_id``; 400/401/403/404 are
permanent (bad chat, bad token, bot blocked). The bot token is part of the URL path, so it is masked
in ``repr()`` and in every reason.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote

from alertkit.backends._http import (
    HttpResponse,
    classify_response,
    parse_retry_after,
)
from alertkit.backends._message import cut, json_object, render_text, summarize
from alertkit.backends._redact import redact_in_library_logs
from alertkit.backends._web import WebBackend, WebOptions
from alertkit.backends.base import MASK
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_API_URL = "https://api.telegram.org"
#: sendMessage takes 1-4096 characters of text, counted as UTF-16 code units.
MAX_TEXT = 4096
CUT_MARKER = "\n…[cut to Telegram's 4096-character limit]"


def cut_message(text: str, limit: int = MAX_TEXT, marker: str = CUT_MARKER) -> str:
    """``text`` if it fits in ``limit`` UTF-16 units, else its start and ``marker``, fitting."""
    return cut(text, limit, marker, utf16=True)


class TelegramBackend(WebBackend):
    """Sends each event to a Telegram chat through a bot.

    URL form: ``tgram://<bot_token>/<chat_id>`` (``chat_id`` a number such as ``-1001234567890``
    or ``@channelname``), options ``?endpoint=`` (another Bot API server, for tests or a local
    Bot API server), ``silent``, ``timeout``, ``connections``, ``verify``, ``name`` and
    ``min_level``.

    Args:
        bot_token: the token BotFather gave you (``123456:ABC-DEF...``).
        chat_id: the chat, group or channel to write to.
        api_url: the Bot API server.
        silent: send without a notification sound (``disable_notification``).
        **options: ``timeout``, ``connections``, ``verify``, ``name`` and ``min_level``, as
            for every HTTP backend (:class:`~alertkit.backends._web.WebBackend`).

    Raises:
        ConfigError: a missing or malformed token, chat id or API URL.
    """

    default_connections = 1
    storm_controlled = True
    scheme = "tgram"
    secret_fields = ("bot_token",)
    max_batch = 20
    max_concurrency = 1

    def __init__(
        self,
        bot_token: str,
        chat_id: str | int,
        api_url: str = DEFAULT_API_URL,
        *,
        silent: bool = False,
        **options: Unpack[WebOptions],
    ) -> None:
        super().__init__(**options)
        if (
            not isinstance(bot_token, str)
            or ":" not in bot_token
            or any(c in bot_token for c in "/?# \t\n")
        ):
            raise ConfigError(
                "tgram: bot_token must be the token BotFather gave (digits, a colon, then letters)"
            )
        if isinstance(chat_id, bool) or not isinstance(chat_id, str | int) or not str(chat_id):
            raise ConfigError("tgram: chat_id must be a chat number or @channelname")
        self._http_url("tgram", "api_url", api_url)
        self.bot_token = bot_token
        self.chat_id = chat_id
        self.api_url = api_url.rstrip("/")
        self.silent = silent
        redact_in_library_logs(self)

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        options = cls._url_options(query, text=("endpoint",), flag=("silent",))
        endpoint = options.pop("endpoint", None)
        if endpoint:
            options["api_url"] = endpoint
        chats = [unquote(p) for p in parts.path.split("/") if p]
        if not parts.netloc or len(chats) != 1:
            raise ConfigError(
                "tgram: the URL must be tgram://<bot_token>/<chat_id> (one chat per backend)"
            )
        return {**options, "bot_token": unquote(parts.netloc), "chat_id": chats[0]}

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        body = json.dumps(self.payload(envelope), ensure_ascii=False).encode("utf-8")
        url = f"{self.api_url}/bot{self.bot_token}/sendMessage"
        return url, body, {"Content-Type": "application/json; charset=utf-8"}

    def payload(self, envelope: Envelope) -> dict[str, Any]:
        """The ``sendMessage`` body: plain text (no ``parse_mode``, so nothing needs escaping and a
        cut cannot break markup)."""
        text = cut_message(render_text(summarize(envelope, app_name=self.app_name)))
        body: dict[str, Any] = {"chat_id": self.chat_id, "text": text}
        if self.silent:
            body["disable_notification"] = True
        return body

    def outcome(self, response: HttpResponse) -> Outcome:
        data = json_object(response.body)
        params = json_object(data.get("parameters"))
        outcome = classify_response(response)
        if isinstance(outcome, Delivered):
            result = json_object(data.get("result"))
            return Delivered({"status": response.status, "message_id": result.get("message_id")})
        if isinstance(outcome, RetryLater):
            delay = outcome.delay
            hint = params.get("retry_after")
            if isinstance(hint, int | float) and not isinstance(hint, bool):
                delay = float(hint)
            elif delay is None:
                delay = parse_retry_after(response.headers.get("retry-after"))
            return RetryLater(self.mask(outcome.reason), delay)
        reason = outcome.reason
        if params.get("migrate_to_chat_id"):
            reason += (
                f" (the group is now the supergroup {params['migrate_to_chat_id']}: "
                "use that chat_id)"
            )
        return Rejected(self.mask(reason))

    def describe(self) -> str:
        return f"{self.api_url}/bot{MASK}/sendMessage chat_id={self.chat_id}"
