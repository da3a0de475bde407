"""Fault injection against real local servers: every scenario counts what was sent, delivered and
lost — and lost is 0 — and shutdown stays within its budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from alertkit import Client, RetryPolicy
from tests.standins.http import Reply, Request, ScriptedServer, free_port

N = 40
#: Retries fast enough for the test, patient enough to outlast each outage.
POLICY = RetryPolicy(
    backoff=0.1,
    max_backoff=0.5,
    max_attempts=100,
    deadline=60,
    circuit_threshold=5,
    circuit_cooldown=0.5,
    circuit_max_cooldown=1.0,
)


class Recorder:
    """A server script: answers with ``reply_for(elapsed)`` and records each event it accepted."""

    def __init__(self, reply_for: Callable[[float], Reply]) -> None:
        self.started = time.monotonic()
        self.reply_for = reply_for
        self.accepted: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        reply = self.reply_for(time.monotonic() - self.started)
        if reply.status < 300 and not (reply.hang or reply.reset or reply.reset_mid_response):
            with self.lock:
                self.accepted.add(request.json()["eventMessage"])
        return reply


def send_all(client: Client) -> set[str]:
    sent = {f"event-{i}" for i in range(N)}
    for message in sorted(sent):
        client.send_event_async(client.create_new_app_event("error", event_message=message))
    return sent


def check(client: Client, sent: set[str], recorder: Recorder, budget: float = 2.0) -> None:
    assert client.flush(30), "everything settled"
    start = time.monotonic()
    client.shutdown(budget)
    assert time.monotonic() - start <= budget + 1.0, "shutdown within its budget"
    stats = client.stats()["http"]
    lost = sent - recorder.accepted
    assert (len(sent), len(recorder.accepted), stats["dropped"], len(lost)) == (N, N, 0, 0)


def make_client(url: str) -> Client:
    return Client(
        api_key="k",
        backends=[f"{url}/v1/events"],
        retry=POLICY,
        timeout=2,
        sample_system=False,
        register_atexit=False,
    )


def test_500_for_3_seconds_then_recovery() -> None:
    recorder = Recorder(lambda t: Reply(500) if t < 3 else Reply(200))
    with ScriptedServer(recorder) as server:
        client = make_client(server.url)
        check(client, send_all(client), recorder)


def test_429_with_retry_after_2() -> None:
    recorder = Recorder(lambda t: Reply(429, headers={"Retry-After": "2"}) if t < 1 else Reply())
    with ScriptedServer(recorder) as server:
        client = make_client(server.url)
        check(client, send_all(client), recorder)


def test_connection_refused_for_5_seconds() -> None:
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}")
    sent = send_all(client)
    time.sleep(5)
    recorder = Recorder(lambda t: Reply())
    with ScriptedServer(recorder, port=port):
        check(client, sent, recorder)


def test_server_that_accepts_and_never_answers_then_recovers() -> None:
    recorder = Recorder(lambda t: Reply(hang=True) if t < 2 else Reply())
    with ScriptedServer(recorder) as server:
        client = make_client(server.url)
        client.backends[0].timeout = 0.5  # the read timeout turns a hang into a retry
        check(client, send_all(client), recorder)


@pytest.mark.parametrize("fault", ["reset", "reset_mid_response"])
def test_connection_reset_then_recovery(fault: str) -> None:
    recorder = Recorder(lambda t: Reply(**{fault: True}) if t < 1.5 else Reply())
    with ScriptedServer(recorder) as server:
        client = make_client(server.url)
        check(client, send_all(client), recorder)


def test_hanging_server_cannot_hold_shutdown(capfd) -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        client = make_client(server.url)
        send_all(client)
        time.sleep(0.2)
        start = time.monotonic()
        client.shutdown(1.0)
        assert time.monotonic() - start < 2.0
        stats = client.stats()["http"]
        assert stats["dropped"] == N, "no spool: every undelivered event is counted"
        assert "http: 40 dropped" in capfd.readouterr().err


def test_smtp_server_down_then_up_loses_no_mail() -> None:
    from tests.standins.smtp import SMTPServer

    port = free_port()
    client = Client(
        backends=[
            f"smtp://127.0.0.1:{port}?to=oncall@example.com&from=app@example.com&use_tls=false"
        ],
        retry=POLICY,
        storm_window=0,
        timeout=2,
        sample_system=False,
        register_atexit=False,
    )
    for i in range(5):
        client.send_event_async(client.create_new_app_event("error", event_message=f"mail-{i}"))
    time.sleep(2)  # the server is down: attempts fail with connection refused
    server = SMTPServer()
    server.port = port
    server.controller.port = port
    with server:
        assert client.flush(30)
        subjects = sorted(m.message["Subject"] for m in server.messages)
        assert len(subjects) == 5 and all("mail-" in s for s in subjects)
        stats = client.stats()[client.backends[0].name]
        assert (stats["delivered"], stats["dropped"]) == (5, 0)
        start = time.monotonic()
        client.shutdown(2)
        assert time.monotonic() - start <= 3
