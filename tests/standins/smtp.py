"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives and can be scripted.

``SMTPServer(tls=ctx)`` offers STARTTLS, ``SMTPServer(implicit_tls=ctx)`` speaks TLS from the first
byte (SMTPS), ``credentials=(user, password)`` enables AUTH and records every login attempt.
``rcpt_replies`` maps an address to the reply its RCPT gets (e.g. ``"550 5.1.1 no such user"``);
``data_replies`` is a list of DATA replies consumed in order (the last repeats), default ``250``.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.standins.http import free_port


@dataclass
class Received:
    """One accepted message: envelope sender and recipients, the parsed message, the peer, and
    whether the session was encrypted and logged in."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: Any
    tls: bool
    authenticated: bool


class _Handler:
    def __init__(self, owner: SMTPServer) -> None:
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.owner.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.owner.next_data_reply()
        if reply.startswith("250"):
            parsed = email.message_from_bytes(
                envelope.original_content or envelope.content, policy=email.policy.default
            )
            with self.owner.lock:
                self.owner.messages.append(
                    Received(
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        parsed,
                        session.peer,
                        server.transport.get_extra_info("ssl_object") is not None,
                        bool(session.authenticated),
                    )
                )
        return reply


class SMTPServer:
    """Start with ``with SMTPServer() as server:``; ``server.port`` is where it listens."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        rcpt_replies: dict[str, str] | None = None,
        data_replies: list[str] | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self.logins: list[tuple[str, str]] = []
        self.rcpt_replies = rcpt_replies or {}
        self.data_replies = data_replies or ["250 2.0.0 OK"]
        self.lock = threading.Lock()
        self._data_index = 0
        self.credentials = credentials
        self.port = free_port()
        options: dict[str, Any] = {}
        if tls is not None:
            options.update(tls_context=tls, require_starttls=True)
        if credentials is not None:
            options.update(
                authenticator=self._authenticate,
                # aiosmtpd counts only STARTTLS as TLS: over SMTPS it would hide AUTH.
                auth_require_tls=tls is not None,
            )
        self.controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=implicit_tls,
            ready_timeout=10,
            **options,
        )

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        pair = (auth_data.login.decode(), auth_data.password.decode())
        with self.lock:
            self.logins.append(pair)
        ok = pair == self.credentials
        return AuthResult(success=ok, handled=ok)  # not handled: aiosmtpd replies 535

    def next_data_reply(self) -> str:
        with self.lock:
            reply = self.data_replies[min(self._data_index, len(self.data_replies) - 1)]
            self._data_index += 1
        return reply

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
