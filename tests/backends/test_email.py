"""EmailBackend against a real local SMTP server (aiosmtpd), messages parsed back.

TLS is real: a throwaway CA (trustme) signs a certificate for 127.0.0.1, the server offers
STARTTLS (or SMTPS), and the backend verifies the certificate against that CA.
"""

from __future__ import annotations

import logging
import ssl

import pytest
import trustme

import alertkit
from alertkit import ConfigError, Delivered, Dropped, Rejected, RetryLater
from alertkit.backends import EmailBackend, create_backend
from tests.backends._notifiers import client_factory, declined, leaked, warning
from tests.standins.http import Reply, ScriptedServer, free_port
from tests.standins.smtp import SMTPServer

PASSWORD = "s3cret-Pa55word"
USER = "alerts@example.com"
TITLE = "[ERROR] PaymentDeclined: card refused — checkout (production)"


@pytest.fixture
def make_client():
    with client_factory() as make:
        yield make


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def server_tls(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def smtp_url(
    port: int,
    ca_file: str | None = None,
    scheme: str = "smtp",
    *,
    login: bool = True,
    **options: str,
) -> str:
    query = "to=oncall@example.com&to=lead@example.com,boss@example.com"
    if ca_file:
        query += f"&ca_file={ca_file}"
    query += "".join(f"&{k}={v}" for k, v in options.items())
    if not login:
        return f"{scheme}://127.0.0.1:{port}?from={USER}&{query}"
    return f"{scheme}://alerts%40example.com:{PASSWORD}@127.0.0.1:{port}?{query}"


def parts(message):
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    return text, html


def test_starttls_login_and_a_readable_message(server_tls, ca_file, make_client):
    with SMTPServer(tls=server_tls, credentials=(USER, PASSWORD)) as smtp:
        client = make_client([smtp_url(smtp.port, ca_file)])
        envelope = declined(client, details={"order": 42})
        results = client.send_event(envelope, timeout=10)
        assert isinstance(results["email"], Delivered)
        assert results["email"].info["recipients"] == 3
        [received] = smtp.messages
    assert smtp.logins == [(USER, PASSWORD)]
    assert received.tls and received.authenticated
    assert received.mail_from == USER
    assert received.rcpt_tos == ["oncall@example.com", "lead@example.com", "boss@example.com"]
    message = received.message
    assert message["Subject"] == TITLE
    assert message["From"] == USER
    assert message["To"] == "oncall@example.com, lead@example.com, boss@example.com"
    assert message["X-Alertkit-Event-Id"] == envelope.event_id
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    assert text.startswith(TITLE + "\n")
    assert "Stage: production" in text and "App version: 2.4.1" in text
    assert "in _charge" in text and "order: 42" in text
    assert "<h2" in html and "card refused — checkout (production)" in html
    assert "in _charge" in html and "<b>order</b>: 42" in html


def test_html_part_escapes_the_application_text(make_client):
    with SMTPServer() as smtp:
        client = make_client(
            [EmailBackend("127.0.0.1", smtp.port, USER, None, ["a@example.com"], use_tls=False)]
        )
        event = client.create_new_app_event(
            "error", event_type="x", event_message="<script>alert(1)</script>"
        )
        client.send_event(event, timeout=10)
        _, html = parts(smtp.messages[0].message)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_smtps_implicit_tls(server_tls, ca_file, make_client):
    with SMTPServer(implicit_tls=server_tls, credentials=(USER, PASSWORD)) as smtp:
        client = make_client([smtp_url(smtp.port, ca_file, scheme="smtps")])
        assert client.backends[0].use_ssl and not client.backends[0].use_tls
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["email"], Delivered)
        assert smtp.messages[0].tls


def test_plain_relay_without_credentials_never_logs_in(make_client):
    with SMTPServer() as smtp:
        url = f"smtp://127.0.0.1:{smtp.port}?from=app@example.com&to=ops@example.com&tls=no"
        client = make_client([url])
        results = client.send_event(warning(client), timeout=10)
        assert isinstance(results["email"], Delivered)
        assert smtp.logins == []
        assert smtp.messages[0].message["Subject"] == (
            "[WARNING] disk: disk at 91% — checkout (production)"
        )


def test_server_without_starttls_is_rejected_not_sent_in_clear(make_client):
    with SMTPServer(credentials=(USER, PASSWORD)) as smtp:
        client = make_client([smtp_url(smtp.port)])
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["email"], Rejected)
        assert "STARTTLS" in results["email"].reason
        assert smtp.logins == [] and smtp.messages == []


def test_untrusted_certificate_is_retried_not_ignored(server_tls, make_client):
    with SMTPServer(tls=server_tls, credentials=(USER, PASSWORD)) as smtp:
        backend = create_backend(smtp_url(smtp.port))  # the system CAs do not know our CA
        with client_factory() as make:
            [outcome] = backend.send([declined(make([backend]))])
        assert isinstance(outcome, RetryLater)
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason
        assert smtp.logins == []


def test_wrong_password_rejected_without_leaking_it(server_tls, ca_file, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    with SMTPServer(tls=server_tls, credentials=(USER, "another")) as smtp:
        client = make_client([smtp_url(smtp.port, ca_file)])
        results = client.send_event(declined(client), timeout=10)
    reason = results["email"].reason
    assert isinstance(results["email"], Rejected) and reason.startswith("SMTP 535")
    for text in (reason, repr(client.backends[0]), repr(client), str(client.stats())):
        assert PASSWORD not in text
    assert "****" in repr(client.backends[0])
    assert leaked(caplog, PASSWORD) == []


def test_4xx_data_reply_is_retried_then_delivered(make_client):
    with SMTPServer(data_replies=["451 4.3.0 try again later", "250 OK"]) as smtp:
        client = make_client([smtp_url(smtp.port, login=False, tls="no")])
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["email"], Delivered)
        assert len(smtp.messages) == 1
        assert client.stats()["email"]["retried"] == 1


def test_5xx_data_reply_is_rejected_with_the_servers_text(make_client):
    with SMTPServer(data_replies=["554 5.7.1 message refused as spam"]) as smtp:
        client = make_client([smtp_url(smtp.port, login=False, tls="no")])
        results = client.send_event(declined(client), timeout=10)
    assert results["email"] == Rejected("SMTP 554 5.7.1 message refused as spam")


def test_recipients_refused(make_client):
    every = {
        a: "550 5.1.1 no such user"
        for a in ("oncall@example.com", "lead@example.com", "boss@example.com")
    }
    with SMTPServer(rcpt_replies=every) as smtp:
        client = make_client([smtp_url(smtp.port, login=False, tls="no")])
        results = client.send_event(declined(client), timeout=10)
    assert isinstance(results["email"], Rejected)
    assert "oncall@example.com: 550 5.1.1 no such user" in results["email"].reason

    with SMTPServer(rcpt_replies={"boss@example.com": "550 5.1.1 no such user"}) as smtp:
        client = make_client([smtp_url(smtp.port, login=False, tls="no")])
        results = client.send_event(declined(client), timeout=10)
        # Two got it: a retry would mail them twice, so it is delivered, with the refusal noted.
        assert results["email"].info["refused"] == {"boss@example.com": 550}
        assert smtp.messages[0].rcpt_tos == ["oncall@example.com", "lead@example.com"]


def test_a_batch_shares_one_connection_and_sends_one_message_per_event(make_client):
    with SMTPServer() as smtp:
        backend = create_backend(smtp_url(smtp.port, login=False, tls="no"))
        client = make_client([backend])
        envelopes = [declined(client), warning(client), declined(client)]
        outcomes = backend.send(envelopes)
        assert [type(o) for o in outcomes] == [Delivered] * 3
        assert [r.message["X-Alertkit-Event-Id"] for r in smtp.messages] == [
            e.event_id for e in envelopes
        ]
        assert len({r.peer for r in smtp.messages}) == 1


def test_unreachable_server_is_retried():
    backend = EmailBackend("127.0.0.1", free_port(), USER, PASSWORD, "a@example.com", timeout=2)
    with client_factory() as make:
        outcomes = backend.send([declined(make([backend]))] * 2)
    assert [type(o) for o in outcomes] == [RetryLater, RetryLater]
    assert "ConnectionRefusedError" in outcomes[0].reason
    assert PASSWORD not in outcomes[0].reason


def test_one_failing_notifier_does_not_stop_the_others(make_client):
    with (
        SMTPServer(data_replies=["451 4.3.0 mailbox busy"]) as smtp,
        ScriptedServer([Reply(200, "ok")]) as slack,
    ):
        client = make_client(
            [
                smtp_url(smtp.port, login=False, tls="no"),
                f"slack://hooks.slack.com/services/T/B/X?endpoint={slack.url}",
            ],
            retry=alertkit.RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.02),
        )
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["slack"], Delivered)
        assert isinstance(results["email"], Dropped)
        assert smtp.messages == []


def test_min_level_from_url_and_keyword():
    assert create_backend(smtp_url(25, min_level="error")).min_level == 40
    assert EmailBackend("h", 25, USER, None, "a@example.com", min_level="warning").min_level == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipient_emails": []}, "recipient_emails"),
        ({"recipient_emails": ["not-an-address"]}, "recipient_emails"),
        ({"sender_email": "nobody"}, "sender_email"),
        ({"use_ssl": True}, "exclude each other"),
        ({"smtp_port": 0}, "smtp_port"),
        ({"smtp_server": ""}, "smtp_server"),
    ],
)
def test_bad_config_rejected_at_construction(kwargs, message):
    options = {
        "smtp_server": "mail.example.com",
        "sender_email": USER,
        "recipient_emails": ["a@example.com"],
        **kwargs,
    }
    with pytest.raises(ConfigError, match=message):
        EmailBackend(**options)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("smtp://mail.example.com?to=a@example.com", "from="),
        ("smtp://a%40b.c:pw@mail.example.com?to=a@example.com&cc=x", "unknown URL option"),
        ("smtp://a%40b.c:pw@mail.example.com:99999?to=a@example.com", "port"),
    ],
)
def test_bad_urls_rejected(spec, message):
    with pytest.raises(ConfigError, match=message):
        create_backend(spec)
