"""AppriseBackend with the real apprise library: its json:// and form:// services pointed at local
stand-ins, a YAML configuration file, per-service outcomes and masked secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from alertkit import AlertHandler, Client, Delivered, Rejected, RetryLater
from alertkit.backends.apprise import AppriseBackend
from alertkit.backends.base import Backend, ClientContext
from alertkit.backends.registry import create_backend
from alertkit.model.errors import ConfigError
from alertkit.model.event import AppEvent, Envelope
from alertkit.testing.contract import NetworkBackendContract
from tests.backends._notifiers import client_factory, declined, leaked, warning
from tests.standins.http import Reply, ScriptedServer

SECRET = "s3cretAppr1seToken"


def host(server: ScriptedServer) -> str:
    return server.url.partition("://")[2]


def json_url(server: ScriptedServer, path: str = "hook") -> str:
    return f"json://ops:{SECRET}@{host(server)}/{path}"


def bound(*urls: str, **options: Any) -> AppriseBackend:
    backend = AppriseBackend(list(urls), timeout=2, **options)
    backend.bind(ClientContext(timeout=2, app_name="checkout"))
    return backend


def plain(level: str = "error", message: str = "card refused", **fields: Any) -> Envelope:
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type="PaymentDeclined",
        event_message=message,
        log_level=level,  # type: ignore[arg-type]
    )
    return Envelope(event=event, **fields)


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    with client_factory() as make:
        yield make


# -- the notification ------------------------------------------------------------------------------


def test_json_service_gets_the_summary_title_body_and_type(make_client) -> None:
    with ScriptedServer() as server:
        client = make_client([f"apprise://{json_url(server)}"])
        results = client.send_event(declined(client), timeout=10)
        assert isinstance(results["apprise"], Delivered), results
        [request] = server.requests
    body = request.json()
    assert body["title"] == "[ERROR] PaymentDeclined: card refused — checkout (production)"
    assert "card refused" in body["message"] and "Stack trace" in body["message"]
    assert not body["message"].startswith("[ERROR]"), "the title is not repeated in the body"
    assert body["type"] == "failure"
    assert not body.get("attachments"), "attachments never"
    assert request.headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("level", "kind", "expected"),
    [
        ("debug", "event", "info"),
        ("info", "event", "info"),
        ("warning", "event", "warning"),
        ("error", "event", "failure"),
        ("fatal", "event", "failure"),
        ("info", "resolve", "success"),
    ],
)
def test_the_notify_type_follows_the_level(level: str, kind: str, expected: str) -> None:
    with ScriptedServer() as server:
        backend = bound(json_url(server))
        try:
            outcome = backend.send([plain(level, kind=kind)])[0]
        finally:
            backend.close()
        assert isinstance(outcome, Delivered)
        assert server.requests[0].json()["type"] == expected


def test_form_service_gets_the_fields_urlencoded(make_client) -> None:
    with ScriptedServer() as server:
        client = make_client([f"apprise://form://{host(server)}/notify"])
        results = client.send_event(warning(client), timeout=10)
        assert isinstance(results["apprise"], Delivered), results
        [request] = server.requests
    assert request.path == "/notify"
    fields = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert fields["title"].startswith("[WARNING] disk: disk at 91%")
    assert fields["type"] == "warning" and "disk at 91%" in fields["message"]


def test_a_yaml_configuration_file_works_unchanged(tmp_path: Path) -> None:
    with ScriptedServer() as first, ScriptedServer() as second:
        config = tmp_path / "apprise.yml"
        config.write_text(
            "version: 1\n"
            "urls:\n"
            f"  - {json_url(first)}:\n"
            "    - tag: ops\n"
            f"  - form://{host(second)}/hook\n"
        )
        backend = AppriseBackend(config=str(config), timeout=2)
        try:
            assert len(backend.servers) == 2
            assert SECRET not in repr(backend)
            assert isinstance(backend.send([plain()])[0], Delivered)
        finally:
            backend.close()
        assert len(first.requests) == 1 and len(second.requests) == 1
    url_form = create_backend(f"apprise://{config}?name=ops&timeout=3")
    assert isinstance(url_form, AppriseBackend) and len(url_form.servers) == 2
    assert (url_form.name, url_form.timeout) == ("ops", 3.0)
    with pytest.raises(ConfigError, match="unknown URL option"):
        create_backend(f"apprise://{config}?colour=red")


def test_a_text_configuration_file_works_too(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        config = tmp_path / "apprise.txt"
        config.write_text(f"ops={json_url(server)}\n")
        backend = AppriseBackend(config=str(config), timeout=2)
        try:
            assert isinstance(backend.send([plain()])[0], Delivered)
        finally:
            backend.close()
        assert len(server.requests) == 1


def test_a_storm_is_one_notification_then_a_digest(make_client) -> None:
    with ScriptedServer() as server:
        client = make_client([f"apprise://{json_url(server)}"], storm_window=0.3)
        logger = logging.getLogger("tests.apprise.storm")
        logger.propagate = False
        handler = AlertHandler(client=client)
        logger.addHandler(handler)
        try:
            for order in range(20):
                logger.error("Payment declined for order %s", order)
        finally:
            logger.removeHandler(handler)
        assert client.flush(10)
        assert len(server.requests) == 1, "repeats are held back"
        client.shutdown(5)  # sends the pending digest
        assert len(server.requests) == 2
        assert "x 20 in the last" in server.requests[1].json()["message"]


# -- per-service outcomes --------------------------------------------------------------------------


def test_a_failed_service_is_retried_alone() -> None:
    with ScriptedServer() as healthy, ScriptedServer([Reply(500), Reply(200)]) as flaky:
        backend = bound(json_url(healthy), json_url(flaky, "other"))
        envelope = plain()
        try:
            first = backend.send([envelope])[0]
            second = backend.send([envelope])[0]
        finally:
            backend.close()
        assert isinstance(first, RetryLater) and "500" in first.reason, first
        assert "1 of 2" in first.reason
        assert isinstance(second, Delivered), second
        assert len(healthy.requests) == 1, "the service that took the event is not notified twice"
        assert len(flaky.requests) == 2


@pytest.mark.parametrize(("status", "kind"), [(400, Rejected), (404, Rejected), (429, RetryLater)])
def test_a_services_status_gives_its_outcome(status: int, kind: type) -> None:
    with ScriptedServer([Reply(status)]) as server:
        backend = bound(json_url(server))
        try:
            outcome = backend.send([plain()])[0]
        finally:
            backend.close()
    assert isinstance(outcome, kind) and str(status) in outcome.reason, outcome


def test_an_unreachable_service_is_retried() -> None:
    with ScriptedServer() as server:
        url = json_url(server)
    backend = bound(url)
    try:
        outcome = backend.send([plain()])[0]
    finally:
        backend.close()
    assert isinstance(outcome, RetryLater) and "JSON" in outcome.reason, outcome


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: AppriseBackend(["discord://only-an-id"]), "Discord"),
        (lambda: AppriseBackend(["nosuchservice://x/y"]), "Unparseable"),
        (lambda: AppriseBackend([]), "urls"),
        (lambda: AppriseBackend(["json://127.0.0.1/h"], timeout=0), "timeout"),
    ],
)
def test_a_misconfigured_service_is_refused_with_apprises_reason(build, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        build()


def test_a_bad_entry_in_a_configuration_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "apprise.yml"
    config.write_text(f"urls:\n  - json://127.0.0.1/hook\n  - tgram://{SECRET}\n")
    with pytest.raises(ConfigError, match="config") as caught:
        AppriseBackend(config=str(config))
    assert SECRET not in str(caught.value)


def test_a_missing_configuration_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config"):
        AppriseBackend(config=str(tmp_path / "absent.yml"))


def test_the_url_form_reads_min_level_and_leaves_the_rest_to_apprise() -> None:
    backend = create_backend(
        f"apprise://json://ops:{SECRET}@127.0.0.1:9/hook?min_level=warning&method=PUT"
    )
    assert isinstance(backend, AppriseBackend) and backend.min_level == logging.WARNING
    assert backend.servers[0].method == "PUT"
    assert backend.storm_controlled is True


def test_secrets_are_masked_in_repr_reasons_and_every_log_line(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    echo = Reply(401, {"error": f"bad auth ops:{SECRET}"})
    with ScriptedServer([echo]) as server:
        backend = bound(json_url(server), f"discord://123456789/{SECRET}x")
        try:
            outcome = backend.send([plain()])[0]
        finally:
            backend.close()
    assert SECRET not in repr(backend) and SECRET not in str(outcome)
    assert leaked(caplog, SECRET) == []


def test_cli_output_masks_the_secrets(capsys) -> None:
    from alertkit.cli import main

    with ScriptedServer() as server:
        code = main(["demo", "--timeout", "10", "--backend", f"apprise://{json_url(server)}"])
        assert server.requests, "the demo's events reached the service"
    out = capsys.readouterr()
    assert code == 0, out
    assert "json://ops:****@" in out.out and SECRET not in out.out + out.err


def test_a_cli_mistake_is_one_line_without_the_secret(capsys) -> None:
    from alertkit.cli import main

    code = main(["demo", "--backend", f"apprise://tgram://{SECRET}"])
    err = capsys.readouterr().err
    assert code == 2 and "tgram" in err and SECRET not in err
    assert len(err.strip().splitlines()) == 1, err


# -- the backend contract --------------------------------------------------------------------------


class TestAppriseContract(NetworkBackendContract):
    secrets = (SECRET,)

    def make(self, endpoint: str, timeout: float) -> Backend:
        return AppriseBackend([f"json://ops:{SECRET}@{endpoint}/hook"], timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"apprise://json://ops:{SECRET}@{endpoint}/hook?cto={timeout}&rto={timeout}"

    @contextmanager
    def healthy(self) -> Iterator[str]:
        with ScriptedServer() as server:
            yield host(server)

    def bad_configs(self) -> Iterable[tuple[Callable[[], object], str]]:
        yield (lambda: AppriseBackend([f"tgram://{SECRET}"]), "url")
        yield (lambda: AppriseBackend([], config=None), "config")
        yield (lambda: AppriseBackend([f"json://ops:{SECRET}@h/x"], timeout=-1), "timeout")
