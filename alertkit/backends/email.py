"""Email over SMTP: one message per event, a real subject line, a plain-text and an HTML part.

WIRE.md section 4: SMTP on port 587 with STARTTLS and login, as Escalite does, but with a subject
that says what happened (``[ERROR] PaymentDeclined: card refused — checkout (production)``) and an
HTML alternative. ``smtps`` (or ``use_ssl=True``) talks TLS from the first byte, port 465. A batch
shares one SMTP connection; each event is still its own message.

SMTP replies map onto outcomes by their first digit: 4xx (and lost connections, timeouts) retry
later, 5xx is permanent. A server that does not offer STARTTLS when ``use_tls`` is on is rejected:
alertkit does not fall back to sending a password in clear.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote

from alertkit.backends._message import render_html, render_text, summarize
from alertkit.backends._options import read_options
from alertkit.backends._redact import masked_url
from alertkit.backends.base import MASK, BaseBackend, ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater


class _ConnectionLostError(Exception):
    """The SMTP session is unusable: the rest of the batch is retried later."""


def _decode(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}"


def _reply_text(error: smtplib.SMTPResponseException) -> str:
    return "SMTP " + _decode(error.smtp_code, error.smtp_error)


class EmailBackend(BaseBackend):
    """Mails each event to a list of recipients through an SMTP server.

    URL form: ``smtp://user:password@host:587?to=a@example.com&to=b@example.com&from=...``
    (``smtps://`` for TLS from the start, default port 465); options ``to`` (repeat it or separate
    with commas), ``from`` (default: the user name when it is an address), ``tls`` (STARTTLS,
    default on), ``timeout``, ``verify``, ``ca_file``, ``name`` and ``min_level``. Write an ``@``
    inside the user name as ``%40``.

    Args:
        smtp_server: the SMTP host.
        smtp_port: its port (587 for STARTTLS, 465 for SSL, 25 for plain relays).
        sender_email: the ``From`` address.
        sender_password: the SMTP password; without it no login is attempted.
        recipient_emails: one address or a list of them.
        use_tls: upgrade the connection with STARTTLS before login (required when offered).
        use_ssl: connect with TLS from the start (SMTPS); excludes ``use_tls``.
        username: the login name, when it is not ``sender_email``.
        timeout: connection and reply timeout in seconds; default: the client's.
        verify: verify the server's certificate and host name (keep it on outside tests).
        ca_file: a PEM file of CA certificates to trust instead of the system's.
        name: the backend's name in stats and results (default ``email``).
        min_level: the lowest level sent here.

    Raises:
        ConfigError: no server, sender or recipient, a bad port, or both TLS modes at once.
    """

    storm_controlled = True
    schemes = ("smtp", "smtps")
    secret_fields = ("sender_password",)
    max_batch = 20
    max_concurrency = 2

    def __init__(
        self,
        smtp_server: str,
        smtp_port: int = 587,
        sender_email: str = "",
        sender_password: str | None = None,
        recipient_emails: str | Sequence[str] = (),
        use_tls: bool = True,
        use_ssl: bool = False,
        *,
        username: str | None = None,
        timeout: float | None = None,
        verify: bool = True,
        ca_file: str | None = None,
        name: str | None = None,
        min_level: str | int | None = None,
    ) -> None:
        super().__init__(name=name or "email", min_level=min_level)
        if not isinstance(smtp_server, str) or not smtp_server.strip():
            raise ConfigError("email: smtp_server (the SMTP host) is required")
        if (
            isinstance(smtp_port, bool)
            or not isinstance(smtp_port, int)
            or not (0 < smtp_port < 65536)
        ):
            shown = smtp_port if isinstance(smtp_port, int) else f"a {type(smtp_port).__name__}"
            # not the value itself: a password given one place too early would be printed
            raise ConfigError(f"email: smtp_port must be a port number, got {shown}")
        if not isinstance(sender_email, str) or "@" not in sender_email:
            raise ConfigError("email: sender_email must be an address (the From of every alert)")
        recipients = (
            [recipient_emails] if isinstance(recipient_emails, str) else list(recipient_emails)
        )
        recipients = [r.strip() for r in recipients if isinstance(r, str) and r.strip()]
        if not recipients or any("@" not in r for r in recipients):
            wrong = sum("@" not in r for r in recipients)  # a password in the wrong place?
            raise ConfigError(
                "email: recipient_emails must hold at least one address, and only "
                f"addresses; got {len(recipients)} entries, {wrong} of them not an address"
            )
        if use_tls and use_ssl:
            raise ConfigError(
                "email: use_tls (STARTTLS) and use_ssl (SMTPS) exclude each other; choose one"
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError("email: timeout must be positive")
        self.smtp_server = smtp_server
        self.smtp_port = smtp_port
        self.sender_email = sender_email
        self.sender_password = sender_password or None
        self.recipient_emails = recipients
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.username = username or sender_email
        self.timeout = timeout
        self.verify = verify
        self.ca_file = ca_file
        self.app_name: str | None = None
        self._ssl_context: ssl.SSLContext | None = None

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        given = read_options(
            "email",
            query,
            text=("to", "from", "ca_file"),
            number=("timeout",),
            flag=("tls", "use_tls", "use_ssl", "verify"),
        )
        # ``to`` may repeat, which the single-valued ``query`` cannot hold: read it again.
        recipients = [
            address.strip()
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key == "to"
            for address in value.split(",")
            if address.strip()
        ]
        secure = parts.scheme.lower() == "smtps"
        try:
            port = parts.port
        except ValueError:  # its message quotes the "port", which may be a misplaced password
            raise ConfigError(
                f"email: the port in {masked_url(parts.geturl())} is not a number (a password "
                "with / ? # or @ in it must be percent-encoded: %2F %3F %23 %40)"
            ) from None
        user = unquote(parts.username) if parts.username else None
        sender = given.get("from") or (user if user and "@" in user else "")
        if not sender:
            raise ConfigError("email: the URL needs from=<address> (or a user name that is one)")
        options: dict[str, Any] = {
            "smtp_server": parts.hostname or "",
            "smtp_port": port or (465 if secure else 587),
            "sender_email": sender,
            "sender_password": unquote(parts.password) if parts.password else None,
            "recipient_emails": recipients,
            "use_ssl": secure or given.get("use_ssl", False),
            "use_tls": (not secure) and given.get("use_tls", given.get("tls", True)),
            "username": user,
        }
        options.update({k: given[k] for k in ("timeout", "verify") if k in given})
        if given.get("ca_file"):
            options["ca_file"] = given["ca_file"]
        return options

    def bind(self, context: ClientContext) -> None:
        if self.timeout is None:
            self.timeout = context.timeout
        self.app_name = context.app_name

    # -- the message ----------------------------------------------------------------------------

    def message(self, envelope: Envelope) -> EmailMessage:
        """The email for one event: subject line, text part, HTML alternative."""
        summary = summarize(envelope, app_name=self.app_name)
        message = EmailMessage()
        message["Subject"] = summary.title
        message["From"] = self.sender_email
        message["To"] = ", ".join(self.recipient_emails)
        message["Date"] = formatdate(envelope.created, localtime=False)
        message["Message-ID"] = make_msgid("alertkit", domain=self.sender_email.rpartition("@")[2])
        message["X-Alertkit-Event-Id"] = envelope.event_id
        message["X-Alertkit-Level"] = summary.level
        message.set_content(render_text(summary))
        message.add_alternative(render_html(summary), subtype="html")
        return message

    # -- SMTP -------------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = ssl.create_default_context(cafile=self.ca_file)
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        timeout = self.timeout or 10.0
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(
                self.smtp_server, self.smtp_port, timeout=timeout, context=self._context()
            )
        else:
            smtp = smtplib.SMTP(self.smtp_server, self.smtp_port, timeout=timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.use_tls:
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.sender_password:
                smtp.login(self.username, self.sender_password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        if not batch:
            return []
        try:
            smtp = self._connect()
        except smtplib.SMTPNotSupportedError as exc:
            # No STARTTLS (or no AUTH) on offer: sending anyway would expose the password or the
            # alert; this is a configuration problem that retrying cannot fix.
            return [Rejected(self.mask(f"SMTP: {exc}"))] * len(batch)
        except smtplib.SMTPResponseException as exc:
            return [self._from_reply(exc)] * len(batch)
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS failure
            return [RetryLater(self._describe(exc))] * len(batch)
        outcomes: list[Outcome] = []
        try:
            for index, envelope in enumerate(batch):
                try:
                    outcomes.append(self._send_one(smtp, envelope))
                except _ConnectionLostError as exc:
                    outcomes.extend([RetryLater(str(exc))] * (len(batch) - index))
                    break
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        return outcomes

    def _send_one(self, smtp: smtplib.SMTP, envelope: Envelope) -> Outcome:
        message = self.message(envelope)
        try:
            refused = smtp.send_message(
                message, from_addr=self.sender_email, to_addrs=self.recipient_emails
            )
        except smtplib.SMTPRecipientsRefused as exc:
            replies = exc.recipients.values()
            temporary = any(400 <= code < 500 for code, _ in replies)
            text = "; ".join(
                f"{address}: {_decode(code, reply)}"
                for address, (code, reply) in exc.recipients.items()
            )
            reason = self.mask(f"every recipient was refused: {text}")
            return RetryLater(reason) if temporary else Rejected(reason)
        except smtplib.SMTPServerDisconnected as exc:
            raise _ConnectionLostError(self._describe(exc)) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code in (421, -1):  # the server is closing the session
                raise _ConnectionLostError(self.mask(_reply_text(exc))) from exc
            return self._from_reply(exc)
        except (smtplib.SMTPException, OSError) as exc:
            raise _ConnectionLostError(self._describe(exc)) from exc
        info: dict[str, Any] = {
            "recipients": len(self.recipient_emails) - len(refused),
            "message_id": message["Message-ID"],
        }
        if refused:
            # Some recipients got it: retrying would mail them twice, so it counts as delivered.
            info["refused"] = {address: code for address, (code, _) in refused.items()}
        return Delivered(info)

    def _from_reply(self, error: smtplib.SMTPResponseException) -> Outcome:
        reason = self.mask(_reply_text(error))
        if 400 <= error.smtp_code < 500 or error.smtp_code < 0:
            return RetryLater(reason)
        return Rejected(reason)

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, socket.timeout | TimeoutError):
            text = f"timed out after {self.timeout or 10.0:g}s"
        else:
            text = str(error) or type(error).__name__
        return self.mask(f"{type(error).__name__}: {text} ({self.smtp_server}:{self.smtp_port})")

    def describe(self) -> str:
        scheme = "smtps" if self.use_ssl else "smtp"
        auth = f"{self.username}:{MASK}@" if self.sender_password else ""
        return (
            f"{scheme}://{auth}{self.smtp_server}:{self.smtp_port}"
            f"?to={','.join(self.recipient_emails)}"
        )
