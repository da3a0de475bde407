"""The bridge: Guance webhooks and AppEvent JSON over real HTTP into a PagerDuty stand-in."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import alertkit
from alertkit import ConfigError
from alertkit.cli.bridge import run_bridge
from alertkit.servers.bridge import BridgeApp, create_app, make_bridge_server, serve
from alertkit.testing import MemoryBackend
from tests.standins.pagerduty import PagerDutyStandIn

TOKEN = "s3cret-token"
FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)


def guance(status: str, **fields: Any) -> dict[str, Any]:
    body = {
        "df_title": "CPU over 90% on web001",
        "df_message": "cpu_usage is 97.5",
        "df_status": status,
        "df_event_link": "https://console.guance.example/events/abc",
        "df_dimension_tags": '{"host":"web001"}',
        "df_monitor_checker_event_ref": "ref-cpu-web001",
        "df_fault_id": "fault-1",
        "df_event_id": f"event-{status}",
        "df_monitor_name": "Host monitor",
        "df_workspace_name": "prod",
        "timestamp": 1767322800,
        "Result": 97.5,
    }
    body.update(fields)
    return body


class Bridge:
    """The app on a real threaded server on 127.0.0.1."""

    def __init__(self, app: BridgeApp) -> None:
        self.app = app
        self.server = make_bridge_server("127.0.0.1:0", app)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None, *, auth: bool = True
    ) -> tuple[int, dict[str, Any]]:
        status, raw = self.post_raw(path, body, headers, auth=auth)
        return status, json.loads(raw or b"null")

    def post_raw(
        self, path: str, body: Any, headers: dict[str, str] | None = None, *, auth: bool = True
    ) -> tuple[int, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if auth:
            all_headers.setdefault("Authorization", f"Bearer {TOKEN}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, data, all_headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.close()


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn() as server:
        yield server


@pytest.fixture
def bridge(pd: PagerDutyStandIn) -> Iterator[Bridge]:
    app = create_app([pd.url()], token=TOKEN, retry=FAST, register_atexit=False)
    running = Bridge(app)
    yield running
    running.close()


def test_trigger_then_resolve_of_one_monitor_share_a_dedup_key(
    bridge: Bridge, pd: PagerDutyStandIn
) -> None:
    assert bridge.post("/guance", guance("critical"))[0] == 202
    assert bridge.app.client.flush(5)
    assert bridge.post("/guance?token=" + TOKEN, guance("ok"), auth=False)[0] == 202
    assert bridge.app.client.flush(5)
    assert pd.invalid == []
    trigger, resolve = pd.bodies
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "ref-cpu-web001"
    payload = trigger["payload"]
    assert payload["summary"] == "CPU over 90% on web001"
    assert payload["source"] == "web001"
    assert payload["severity"] == "critical"
    assert payload["timestamp"].startswith("2026-01-02T03:00:00")
    assert payload["custom_details"]["message"] == "cpu_usage is 97.5"
    assert payload["custom_details"]["value"] == 97.5
    assert payload["custom_details"]["tags"] == {"host": "web001"}
    assert trigger["client_url"] == "https://console.guance.example/events/abc"
    assert trigger["links"] == [
        {"href": "https://console.guance.example/events/abc", "text": "Guance event"}
    ]


@pytest.mark.parametrize(
    ("status", "severity"),
    [
        ("critical", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("nodata", "warning"),
    ],
)
def test_guance_status_sets_the_severity(status: str, severity: str) -> None:
    memory = MemoryBackend()
    app = create_app([memory], token=TOKEN, register_atexit=False)
    running = Bridge(app)
    try:
        assert running.post("/guance", guance(status))[0] == 202
        assert app.client.flush(5)
    finally:
        running.close()
    assert memory.envelopes[0].payload is not None
    assert memory.envelopes[0].payload["severity"] == severity


@pytest.mark.parametrize("status", ["ok", "nodata_ok", "nodata_as_ok", "manual_ok"])
def test_every_ok_status_resolves_with_the_fault_id_as_fallback(status: str) -> None:
    memory = MemoryBackend()
    app = create_app([memory], token=TOKEN, register_atexit=False)
    running = Bridge(app)
    try:
        body = guance(status)
        del body["df_monitor_checker_event_ref"]
        assert running.post("/guance", body) == (
            202,
            {"status": "queued", "action": "resolve", "dedup_key": "fault-1"},
        )
        assert app.client.flush(5)
    finally:
        running.close()
    sent = [(e.kind, e.payload) for e in memory.envelopes]
    assert sent == [("resolve", {"dedup_key": "fault-1"})]


def test_source_falls_back_to_the_workspace(bridge: Bridge, pd: PagerDutyStandIn) -> None:
    assert bridge.post("/guance", guance("error", df_dimension_tags=""))[0] == 202
    assert bridge.app.client.flush(5)
    assert pd.bodies[0]["payload"]["source"] == "prod"


def test_missing_or_wrong_token_is_401(bridge: Bridge, pd: PagerDutyStandIn) -> None:
    assert bridge.post("/guance", guance("critical"), auth=False)[0] == 401
    wrong = {"Authorization": "Bearer nope"}
    assert bridge.post("/guance?token=nope", guance("critical"), wrong)[0] == 401
    assert bridge.app.client.flush(5)
    assert pd.bodies == []


def test_malformed_json_and_missing_fields_are_400_naming_the_field(bridge: Bridge) -> None:
    status, body = bridge.post("/guance", b"{not json")
    assert status == 400
    assert "malformed JSON" in body["error"]
    for field in ("df_title", "df_status"):
        data = guance("critical")
        del data[field]
        assert bridge.post("/guance", data) == (
            400,
            {"error": f"{field} is required (a non-empty string)", "field": field},
        )
    assert bridge.post("/guance", guance("sideways"))[1]["field"] == "df_status"
    bad_tags = guance("critical", df_dimension_tags="[1")
    assert bridge.post("/guance", bad_tags)[1]["field"] == "df_dimension_tags"


def test_body_over_one_megabyte_is_413(bridge: Bridge, pd: PagerDutyStandIn) -> None:
    big = guance("critical", df_message="x" * (1024 * 1024))
    try:
        status, body = bridge.post_raw("/guance", big)
    except ConnectionError:  # refused while still sending: as good as the 413
        status, body = 413, b"1048576"
    assert status == 413
    assert b"1048576" in body
    assert bridge.app.client.flush(5)
    assert pd.bodies == []


def test_an_oversized_body_is_refused_from_its_content_length_before_it_is_read(
    bridge: Bridge,
) -> None:
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as sock:
        sock.sendall(
            b"POST /guance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Length: 50000000\r\n\r\n{"
        )
        answer = sock.recv(4096)  # no more body is coming: a server reading it would hang here
    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"df_title": "t", "df_status": "critical", "Result": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}",
    ],
    ids=["top-level", "in-a-field"],
)
@pytest.mark.parametrize("path", ["/guance", "/events"])
def test_deeply_nested_json_is_400_not_500(bridge: Bridge, path: str, body: bytes) -> None:
    status, answer = bridge.post(path, body)
    assert (status, answer["field"]) == (400, None)
    assert "nested" in answer["error"] or "JSON object" in answer["error"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_numbers_that_are_not_json_are_400(
    bridge: Bridge, pd: PagerDutyStandIn, number: bytes
) -> None:
    body = json.dumps(guance("critical", Result=0)).replace(
        '"Result": 0', '"Result": ' + number.decode()
    )
    status, answer = bridge.post("/guance", body.encode())
    assert status == 400
    assert "JSON" in answer["error"] or "range" in answer["error"]
    assert bridge.app.client.flush(5)
    assert pd.bodies == []


def test_the_token_never_reaches_a_log_line(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert bridge.post(f"/guance?token={TOKEN}", guance("critical"), auth=False)[0] == 202
    assert bridge.post(f"/guance&token={TOKEN}", guance("critical"), auth=False)[0] == 404
    assert bridge.post(f"/guance?token={TOKEN}", b"{bad", auth=False)[0] == 400
    assert bridge.app.client.flush(5)
    lines = [record.getMessage() for record in caplog.records]
    assert not [line for line in lines if TOKEN in line]
    access = [r.getMessage() for r in caplog.records if r.name == "alertkit.bridge"]
    assert [line.split(" ")[1:4] for line in access] == [
        ['"POST', '/guance?***"', "202"],
        ['"POST', "<other", "path,"],
        ['"POST', '/guance?***"', "400"],
    ]
    assert '26 chars>" 404 ' in access[1]


def test_events_route_delivers_an_app_event(bridge: Bridge, pd: PagerDutyStandIn) -> None:
    event = {
        "apiKey": "k",
        "classification": "issue",
        "eventType": "PaymentDeclined",
        "eventMessage": "card declined",
        "logLevel": "error",
    }
    status, body = bridge.post("/events", event)
    assert status == 202
    assert len(body["event_id"]) == 32
    assert bridge.app.client.flush(5)
    assert pd.invalid == []
    assert pd.bodies[0]["payload"]["summary"] == "PaymentDeclined: card declined"
    assert pd.bodies[0]["payload"]["severity"] == "error"


def test_events_route_rejects_a_non_event_naming_the_field(bridge: Bridge) -> None:
    status, body = bridge.post(
        "/events", {"apiKey": "k", "classification": "issue", "eventType": "t"}
    )
    assert (status, body["field"]) == (400, "eventMessage")
    status, body = bridge.post(
        "/events",
        {
            "apiKey": "k",
            "classification": "issue",
            "eventType": "t",
            "eventMessage": "m",
            "logLevel": "loud",
        },
    )
    assert (status, body["field"]) == (400, "logLevel")


def test_unknown_path_and_method(bridge: Bridge) -> None:
    assert bridge.post("/nowhere", {})[0] == 404
    status, body = bridge.post(f"/guance&token={TOKEN}", {})
    assert status == 404
    assert TOKEN not in body["error"]  # a mistyped URL is not echoed, token and all
    conn = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    try:
        conn.request("GET", "/guance")
        assert conn.getresponse().status == 405
    finally:
        conn.close()


def test_create_app_checks_its_configuration() -> None:
    with pytest.raises(ConfigError, match="token"):
        create_app(["local://"], token="")
    with pytest.raises(ConfigError, match="backend"):
        create_app([], token=TOKEN)
    app = BridgeApp.__new__(BridgeApp)
    with pytest.raises(ConfigError, match="listen"):
        make_bridge_server("no-port", app)
    with pytest.raises(ConfigError, match="threads"):
        make_bridge_server("127.0.0.1:0", app, threads=0)
    with pytest.raises(ConfigError, match="max_connections"):
        make_bridge_server("127.0.0.1:0", app, max_connections=0)
    with pytest.raises(ConfigError, match="timeout"):
        make_bridge_server("127.0.0.1:0", app, timeout=0)


def test_bridge_on_a_port_in_use_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from alertkit import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        threads = set(threading.enumerate())
        argv = ["bridge", "--listen", f"127.0.0.1:{port}", "--token", TOKEN]
        assert cli.main([*argv, "pagerduty://" + "k" * 32]) == 2
        assert set(threading.enumerate()) <= threads  # no worker threads left behind
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "in use" in err
    assert TOKEN not in err


def test_bridge_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from alertkit import cli

    monkeypatch.delitem(sys.modules, "alertkit.servers.bridge_server", raising=False)
    monkeypatch.setitem(sys.modules, "waitress", None)  # as if never installed
    argv = ["bridge", "--listen", "127.0.0.1:0", "--token", TOKEN, "pagerduty://" + "k" * 32]
    status: list[int] = []
    # in a thread: a bridge that starts serving anyway must fail this test, not hang it
    runner = threading.Thread(target=lambda: status.append(cli.main(argv)), daemon=True)
    runner.start()
    runner.join(10)
    assert status == [2]
    err = capsys.readouterr().err
    assert err == (
        "alertkit: error: bridge: the server needs the 'waitress' package: "
        "pip install 'alertkit[bridge]'\n"
    )


@pytest.mark.parametrize("option", ["--threads", "--max-connections", "--timeout"])
def test_bridge_limits_must_be_positive(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    from alertkit import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["bridge", option, "0", "--token", TOKEN, "pagerduty://" + "k" * 32])
    assert stopped.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_bridge_command_plugs_into_the_cli(monkeypatch, capsys) -> None:
    from alertkit import cli

    monkeypatch.setitem(cli.PLUGINS, "bridge", ("alertkit.cli.bridge", "add_bridge_command"))
    monkeypatch.delenv("ALERTKIT_BRIDGE_TOKEN", raising=False)
    args = cli.build_parser().parse_args(
        ["bridge", "--listen", "127.0.0.1:0", "--token", TOKEN, "pagerduty://" + "k" * 32]
    )
    assert (args.listen, args.token, args.backend) == (
        "127.0.0.1:0",
        TOKEN,
        ["pagerduty://" + "k" * 32],
    )
    assert args.func is run_bridge
    assert cli.main(["bridge", "pagerduty://" + "k" * 32]) == 2
    assert "--token" in capsys.readouterr().err


def test_serve_runs_until_stopped(pd: PagerDutyStandIn) -> None:
    started = threading.Event()
    servers: list[Any] = []

    def ready(server: Any) -> None:
        servers.append(server)
        started.set()

    thread = threading.Thread(target=serve, args=("127.0.0.1:0", TOKEN, [pd.url()], ready))
    thread.start()
    assert started.wait(10)
    port = servers[0].server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        f"/guance?token={TOKEN}",
        json.dumps(guance("warning")).encode(),
        {"Content-Type": "application/json"},
    )
    assert conn.getresponse().status == 202
    conn.close()
    servers[0].shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert [b["payload"]["severity"] for b in pd.bodies] == ["warning"]
