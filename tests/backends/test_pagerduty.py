"""PagerDutyBackend against a local stand-in that validates every body (WIRE.md section 2)."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import alertkit
from alertkit import Client, ConfigError, Delivered, Dropped, Envelope, Rejected, Skipped
from alertkit.backends import PagerDutyBackend, create_backend
from alertkit.backends.local import LocalBackend
from alertkit.backends.pagerduty import stable_dedup_key
from alertkit.policy.limits import Limits
from tests.clients import clients_for_test
from tests.standins.http import Reply, free_port
from tests.standins.pagerduty import KEY, PagerDutyStandIn

FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)
V1_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn() as server:
        yield server


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    with clients_for_test(shutdown=2.0, retry=FAST) as make:
        yield make


@pytest.fixture
def configured_loggers() -> Iterator[list[str]]:
    """Loggers set up by dictConfig in a test; their handlers are closed (clients shut down)."""
    names: list[str] = []
    yield names
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def body_of(pd: PagerDutyStandIn, index: int = -1) -> dict[str, Any]:
    assert pd.invalid == [], pd.invalid
    return pd.bodies[index]


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "short", KEY + "0", KEY[:-1] + "-"])
def test_key_that_is_not_32_characters_is_rejected_at_construction(key: str) -> None:
    with pytest.raises(ConfigError, match="routing_key"):
        PagerDutyBackend(key)


def test_url_options_are_named_like_the_keyword_arguments() -> None:
    backend = create_backend(
        f"pagerduty://{KEY}?source=web01&component=db&group=prod&event_class=disk"
        "&incident_key=k1&client=ops&client_url=https://ops.example&region=eu&timeout=3"
    )
    assert isinstance(backend, PagerDutyBackend)
    assert (backend.routing_key, backend.source, backend.component, backend.group) == (
        KEY,
        "web01",
        "db",
        "prod",
    )
    assert (backend.event_class, backend.incident_key, backend.client) == ("disk", "k1", "ops")
    assert backend.client_url == "https://ops.example"
    assert backend.endpoint == "https://events.eu.pagerduty.com/v2/enqueue"
    assert backend.change_endpoint == "https://events.eu.pagerduty.com/v2/change/enqueue"
    assert backend.timeout == 3.0


def test_unknown_url_option_and_conflicting_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown URL option"):
        create_backend(f"pagerduty://{KEY}?severity=high")
    with pytest.raises(ConfigError, match="region"):
        PagerDutyBackend(KEY, region="mars")
    with pytest.raises(ConfigError, match="endpoint or region"):
        PagerDutyBackend(KEY, region="eu", endpoint="https://example.invalid/v2/enqueue")
    with pytest.raises(ConfigError, match="one of"):
        PagerDutyBackend(KEY, service_key=V1_KEY)


def test_v1_service_key_and_service_id_are_accepted_as_the_routing_key() -> None:
    by_key = create_backend(f"pagerduty://?service_key={V1_KEY}")
    by_id = PagerDutyBackend(service_id=V1_KEY)
    assert isinstance(by_key, PagerDutyBackend)
    assert by_key.routing_key == by_id.routing_key == V1_KEY
    assert by_key.v1_key and by_id.v1_key
    assert by_key.endpoint.endswith("/v2/enqueue")


# -- the body --------------------------------------------------------------------------------------


def test_event_maps_to_a_valid_trigger_with_details(pd: PagerDutyStandIn, make_client: Any) -> None:
    client = make_client(
        pd.url(), app_version="2.4.1", deployment_stage="production", tags={"team": "payments"}
    )
    try:
        1 / 0
    except ZeroDivisionError:
        event = client.create_new_app_event("fatal", exc_info=True)
    event.custom_properties = alertkit.CustomData(
        string_data=alertkit.CustomStringData(custom_data1="checkout")
    )
    results = client.send_event(event, timeout=5)
    assert isinstance(results["pagerduty"], Delivered)
    body = body_of(pd)
    payload = body["payload"]
    assert body["event_action"] == "trigger"
    assert body["routing_key"] == KEY
    assert payload["summary"] == "ZeroDivisionError: division by zero"
    assert payload["severity"] == "critical"
    assert payload["class"] == "ZeroDivisionError"
    assert payload["group"] == "production"
    assert payload["source"] == client.platform.hostname
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    details = payload["custom_details"]
    assert details["custom_data"] == {"customData1": "checkout"}
    assert details["app_version"] == "2.4.1"
    assert details["tags"] == {"team": "payments"}
    assert "ZeroDivisionError: division by zero" in details["stack_trace"]
    assert "line" in details["stack_trace"]
    assert results["pagerduty"].info["dedup_key"] == body["dedup_key"]


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        ("fatal", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("debug", "info"),
    ],
)
def test_severity_follows_the_level(level: str, severity: str, make_client: Any) -> None:
    backend = PagerDutyBackend(KEY)
    client = make_client(LocalBackend())
    event = client.create_new_app_event(level, event_message="m")
    _, data = backend.request_for(Envelope(event=event))
    assert json.loads(data)["payload"]["severity"] == severity


def test_configured_fields_win_over_the_event(pd: PagerDutyStandIn, make_client: Any) -> None:
    client = make_client(
        pd.url(
            source="web01",
            component="db",
            group="blue",
            event_class="disk",
            client="ops",
            client_url="https://ops.example",
        )
    )
    client.send_event(client.create_new_app_event("error", event_message="full"), timeout=5)
    body = body_of(pd)
    assert {k: body["payload"][k] for k in ("source", "component", "group", "class")} == {
        "source": "web01",
        "component": "db",
        "group": "blue",
        "class": "disk",
    }
    assert (body["client"], body["client_url"]) == ("ops", "https://ops.example")


def test_extra_field_named_like_an_alertkit_detail_is_kept_aside(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    client = make_client(pd.url(), app_version="3.0")
    event = client.create_new_app_event("error", event_message="m")
    client.send_event(
        client.envelope_for(event, details={"app_version": "x", "message": "y"}), timeout=5
    )
    details = body_of(pd)["payload"]["custom_details"]
    assert (details["app_version"], details["extra.app_version"]) == ("3.0", "x")
    assert details["message"] == "y"  # alertkit adds no message when it equals the summary


def test_two_thousand_character_message_gives_a_valid_body(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    client = make_client(pd.url())
    message = "x" * 2000
    assert isinstance(
        client.send_event(client.create_new_app_event("error", event_message=message), timeout=5)[
            "pagerduty"
        ],
        Delivered,
    )
    body = body_of(pd)
    assert len(body["payload"]["summary"]) == 1024
    assert body["payload"]["custom_details"]["message"] == message


def test_one_megabyte_extra_field_gives_a_valid_body(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    client = make_client(pd.url())
    logger = logging.getLogger("tests.pagerduty.big")
    logger.propagate = False
    handler = alertkit.AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        logger.error("Upload failed", extra={"blob": "y" * (1024 * 1024), "order": 7})
        assert client.flush(5)
    finally:
        logger.removeHandler(handler)
    body = body_of(pd)
    assert len(json.dumps(body)) <= 512 * 1024
    assert body["payload"]["custom_details"]["order"] == 7
    assert body["payload"]["custom_details"]["blob"].startswith("yyyy")


def test_body_over_512_kb_is_trimmed_largest_details_first(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    # The client's own limits would cut these first; lift them to reach PagerDuty's 512 KB rule.
    roomy = Limits(max_string=1_000_000, max_total=4_000_000)
    client = make_client(pd.url(), limits=roomy)
    event = client.create_new_app_event("error", event_message="big")
    details = {"huge": "a" * 400_000, "large": "b" * 300_000, "small": "keep me"}
    result = client.send_event(client.envelope_for(event, details=details), timeout=5)
    assert isinstance(result["pagerduty"], Delivered)
    sent = body_of(pd)["payload"]["custom_details"]
    assert sent["huge"].startswith("[cut by alertkit")
    assert sent["large"] == "b" * 300_000
    assert sent["small"] == "keep me"
    assert sent["alertkit_cut"] == ["huge"]


def test_long_dedup_key_is_hashed_stably_for_trigger_and_resolve(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    client = make_client(pd.url())
    long_key = "k" * 300
    event = client.create_new_app_event("error", event_message="m")
    client.send_event(client.envelope_for(event, incident_key=long_key), timeout=5)
    client.resolve(long_key).result(5)
    trigger, resolve = body_of(pd, 0), body_of(pd, 1)
    assert trigger["dedup_key"] == resolve["dedup_key"] == stable_dedup_key(long_key)
    assert len(trigger["dedup_key"]) <= 255


def test_links_and_images_are_attached_and_http_images_dropped(
    pd: PagerDutyStandIn, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(pd.url())
    logger = logging.getLogger("tests.pagerduty.links")
    logger.propagate = False
    handler = alertkit.AlertHandler(client=client)
    logger.addHandler(handler)
    caplog.set_level(logging.WARNING, logger="alertkit.backends.pagerduty")
    try:
        logger.error(
            "Latency high",
            extra={
                "links": [{"href": "https://grafana.example/d/1", "text": "dashboard"}],
                "images": [
                    {
                        "src": "https://grafana.example/p.png",
                        "href": "https://g.example",
                        "alt": "p99",
                    },
                    {"src": "http://insecure.example/p.png"},
                ],
            },
        )
        assert client.flush(5)
    finally:
        logger.removeHandler(handler)
    body = body_of(pd)
    assert body["links"] == [{"href": "https://grafana.example/d/1", "text": "dashboard"}]
    assert body["images"] == [
        {"src": "https://grafana.example/p.png", "href": "https://g.example", "alt": "p99"}
    ]
    assert "links" not in body["payload"]["custom_details"]
    assert any("http://insecure.example/p.png" in r.getMessage() for r in caplog.records)


# -- dedup rules through AlertHandler configured by dictConfig ------------------------------------


def _dict_config(configured: list[str], logger: str, backend_url: str, **handler: Any) -> Client:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "pagerduty": {
                    "()": "alertkit.AlertHandler",
                    "level": "ERROR",
                    "backends": [backend_url],
                    "sample_system": False,
                    "register_atexit": False,
                    "retry": FAST,
                    **handler,
                }
            },
            "loggers": {logger: {"handlers": ["pagerduty"], "level": "ERROR", "propagate": False}},
        }
    )
    configured.append(logger)
    found = logging.getLogger(logger).handlers[0]
    assert isinstance(found, alertkit.AlertHandler)
    return found.client


def test_dedup_handler_incident_key_wins(pd: PagerDutyStandIn, configured_loggers: Any) -> None:
    client = _dict_config(configured_loggers, "tests.pd.fixed", pd.url(), incident_key="db-outage")
    log = logging.getLogger("tests.pd.fixed")
    log.error("Primary down")
    log.error("Replica %s lagging", "r2", extra={"incident_key": "ignored"})
    assert client.flush(5)
    assert [b["dedup_key"] for b in pd.bodies] == ["db-outage", "db-outage"]
    assert pd.invalid == []


def test_dedup_extra_incident_key_when_the_handler_has_none(
    pd: PagerDutyStandIn, configured_loggers: Any
) -> None:
    # The seed pagerdutyapi vocabulary: a v1 service key given as service_id.
    url = f"pagerduty://?service_id={V1_KEY}&endpoint={pd.endpoint}"
    client = _dict_config(configured_loggers, "tests.pd.extra", url)
    logging.getLogger("tests.pd.extra").error("Card declined", extra={"incident_key": "pay-42"})
    assert client.flush(5)
    assert body_of(pd)["dedup_key"] == "pay-42"
    assert body_of(pd)["routing_key"] == V1_KEY


def test_dedup_template_groups_every_host_into_one_incident(
    pd: PagerDutyStandIn, configured_loggers: Any
) -> None:
    client = _dict_config(configured_loggers, "tests.pd.disk", pd.url())
    log = logging.getLogger("tests.pd.disk")
    for host in ("web01", "web02", "web03"):
        log.error("Disk %s at %s%%", host, 97)
    assert client.flush(5)
    keys = {b["dedup_key"] for b in pd.bodies}
    assert keys == {"tests.pd.disk:Disk %s at %s%%"}
    assert [b["payload"]["summary"] for b in pd.bodies] == [
        f"tests.pd.disk: Disk {h} at 97%" for h in ("web01", "web02", "web03")
    ]
    assert pd.invalid == []


def test_dedup_backend_incident_key_wins_over_everything(
    pd: PagerDutyStandIn, configured_loggers: Any
) -> None:
    client = _dict_config(
        configured_loggers,
        "tests.pd.backend",
        pd.url(incident_key="svc"),
        incident_key="handler-key",
    )
    logging.getLogger("tests.pd.backend").error("boom")
    assert client.flush(5)
    assert body_of(pd)["dedup_key"] == "svc"


# -- responses -------------------------------------------------------------------------------------


def test_400_is_sent_once_and_reported_in_stats(make_client: Any) -> None:
    error = {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["'payload.summary' is missing or blank"],
    }
    with PagerDutyStandIn(Reply(400, error)) as pd:
        client = make_client(pd.url())
        result = client.send_event(client.create_new_app_event("error"), timeout=5)
        assert client.flush(5)
        assert len(pd.bodies) == 1
    assert isinstance(result["pagerduty"], Rejected)
    assert "payload.summary' is missing or blank" in result["pagerduty"].reason
    stats = client.stats()["pagerduty"]
    assert (stats["rejected"], stats["retried"], stats["delivered"]) == (1, 0, 0)
    assert "Event object is invalid" in stats["last_reason"]["rejected"]


def test_429_with_retry_after_then_202_is_delivered(make_client: Any) -> None:
    with PagerDutyStandIn(Reply(429, {"status": "throttled"}, {"Retry-After": "0"})) as pd:
        client = make_client(pd.url())
        result = client.send_event(client.create_new_app_event("error"), timeout=5)
        assert len(pd.bodies) == 2
    assert isinstance(result["pagerduty"], Delivered)
    assert result["pagerduty"].info["dedup_key"] == pd.bodies[1]["dedup_key"]
    stats = client.stats()["pagerduty"]
    assert (stats["retried"], stats["delivered"]) == (1, 1)


def test_500_500_202_is_delivered(make_client: Any) -> None:
    with PagerDutyStandIn(Reply(500, "oops"), Reply(500, "oops")) as pd:
        client = make_client(pd.url())
        result = client.send_event(client.create_new_app_event("error"), timeout=5)
        assert len(pd.bodies) == 3
    assert isinstance(result["pagerduty"], Delivered)
    assert client.stats()["pagerduty"]["retried"] == 2


def test_hanging_server_times_out_and_is_retried(make_client: Any) -> None:
    with PagerDutyStandIn(Reply(hang=True)) as pd:
        client = make_client(pd.url(timeout="0.3"))
        result = client.send_event(client.create_new_app_event("error"), timeout=5)
        assert len(pd.bodies) == 2
    assert isinstance(result["pagerduty"], Delivered)
    assert "no answer from 127.0.0.1:" in client.stats()["pagerduty"]["last_reason"]["retried"]


def test_network_error_is_retried_then_dropped_with_the_reason(make_client: Any) -> None:
    url = f"pagerduty://{KEY}?endpoint=http://127.0.0.1:{free_port()}/v2/enqueue"
    client = make_client(url, retry=alertkit.RetryPolicy(max_attempts=2, backoff=0.01))
    result = client.send_event(client.create_new_app_event("error"), timeout=5)
    assert isinstance(result["pagerduty"], Dropped)
    stats = client.stats()["pagerduty"]
    assert (stats["retried"], stats["dropped"]) == (1, 1)
    assert KEY not in stats["last_reason"]["dropped"]


def test_v1_key_403_is_a_rate_limit_but_v2_403_is_rejected(make_client: Any) -> None:
    with PagerDutyStandIn(Reply(403, "rate limited")) as pd:
        client = make_client(f"pagerduty://?service_key={V1_KEY}&endpoint={pd.endpoint}")
        result = client.send_event(client.create_new_app_event("error"), timeout=5)
        assert len(pd.bodies) == 2
    assert isinstance(result["pagerduty"], Delivered)
    with PagerDutyStandIn(Reply(403, "forbidden")) as pd:
        client = make_client(pd.url())
        result = client.send_event(client.create_new_app_event("error"), timeout=5)
        assert len(pd.bodies) == 1
    assert isinstance(result["pagerduty"], Rejected)


# -- lifecycle ------------------------------------------------------------------------------------


def test_acknowledge_and_resolve_send_the_dedup_key(pd: PagerDutyStandIn, make_client: Any) -> None:
    client = make_client(
        pd.url(),
        LocalBackend(),
    )
    trigger = client.send_event(client.create_new_app_event("error", event_message="m"), timeout=5)[
        "pagerduty"
    ]
    assert isinstance(trigger, Delivered)
    key = trigger.info["dedup_key"]
    acked = client.acknowledge(key).result(5)
    resolved = client.resolve(key).result(5)
    assert isinstance(acked["pagerduty"], Delivered)
    assert isinstance(resolved["pagerduty"], Delivered)
    assert isinstance(resolved["local"], Skipped)
    ack, res = body_of(pd, 1), body_of(pd, 2)
    assert (ack["event_action"], ack["dedup_key"]) == ("acknowledge", key)
    assert (res["event_action"], res["dedup_key"]) == ("resolve", key)
    assert "payload" not in res


def test_resolve_reaches_a_backend_with_a_high_min_level(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    client = make_client(pd.url(min_level="fatal"))
    assert isinstance(client.resolve("k1").result(5)["pagerduty"], Delivered)
    assert body_of(pd)["event_action"] == "resolve"


def test_change_event_goes_to_the_change_endpoint(pd: PagerDutyStandIn, make_client: Any) -> None:
    client = make_client(pd.url())
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    result = client.change_event(
        "Deploy 2.4.1",
        source="ci",
        custom_details={"build": 220},
        links=[{"href": "https://ci.example/220", "text": "build"}],
        timestamp=when,
    ).result(5)
    assert isinstance(result["pagerduty"], Delivered)
    body = body_of(pd)
    assert pd.paths == ["/v2/change/enqueue"]
    assert body["payload"] == {
        "summary": "Deploy 2.4.1",
        "source": "ci",
        "timestamp": when.isoformat(),
        "custom_details": {"build": 220},
    }
    assert body["links"] == [{"href": "https://ci.example/220", "text": "build"}]


def test_lifecycle_arguments_are_checked_at_the_call(make_client: Any) -> None:
    client = make_client(LocalBackend())
    with pytest.raises(ValueError, match="dedup_key"):
        client.resolve("")
    with pytest.raises(TypeError, match="dedup_key"):
        client.acknowledge(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timestamp"):
        client.change_event("deploy", timestamp="yesterday")
    with pytest.raises(ValueError, match="href"):
        client.change_event("deploy", links=[{"text": "no href"}])


def test_dictconfig_with_the_seed_handlers_service_id(
    pd: PagerDutyStandIn, configured_loggers: Any
) -> None:
    """The seed pagerdutyapi handler took ``service_id=`` in dictConfig; AlertHandler does too."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "pd": {
                    "class": "alertkit.AlertHandler",
                    "level": "ERROR",
                    "service_id": V1_KEY,
                    "endpoint": pd.endpoint,
                    "incident_key": "seed-style",
                    "sample_system": False,
                    "register_atexit": False,
                }
            },
            "loggers": {"tests.pd.seed": {"handlers": ["pd"], "propagate": False}},
        }
    )
    configured_loggers.append("tests.pd.seed")
    handler = logging.getLogger("tests.pd.seed").handlers[0]
    assert isinstance(handler, alertkit.AlertHandler)
    logging.getLogger("tests.pd.seed").error("Queue stuck")
    assert handler.client.flush(5)
    assert body_of(pd)["routing_key"] == V1_KEY
    assert body_of(pd)["dedup_key"] == "seed-style"
    assert [b.scheme for b in handler.client.backends] == ["pagerduty"]


# -- breadcrumbs and fingerprints ------------------------------------------------------------------


def test_breadcrumbs_go_in_custom_details_and_the_fingerprint_is_the_dedup_key(
    pd: PagerDutyStandIn, make_client: Any
) -> None:
    client = make_client(pd.url(), storm_window=0)
    log = logging.getLogger("tests.pd.crumbs")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = alertkit.AlertHandler(client=client)
    log.addHandler(handler)
    try:
        log.info("connecting to %s", "db1", extra={"attempt": 3})
        log.error("query timed out", extra={"fingerprint": ["db-timeout"]})
        log.error("query timed out", extra={"fingerprint": ["x"], "incident_key": "chosen"})
    finally:
        log.removeHandler(handler)
    assert client.flush(5)
    first, second = body_of(pd, 0), body_of(pd, 1)
    assert first["dedup_key"] == "db-timeout"
    assert second["dedup_key"] == "chosen", "an incident key wins over the fingerprint"
    details = first["payload"]["custom_details"]
    assert details["fingerprint"] == ["db-timeout"]
    [crumb] = details["breadcrumbs"]
    assert crumb["message"] == "connecting to db1" and crumb["data"] == {"attempt": 3}
    assert crumb["category"] == "tests.pd.crumbs" and crumb["level"] == "info"


def test_a_long_fingerprint_is_hashed_like_a_long_key(make_client: Any) -> None:
    backend = PagerDutyBackend(KEY)
    envelope = Envelope(
        event=alertkit.AppEvent(
            api_key="", classification="issue", event_type="T", event_message="m"
        ),
        fingerprint=["x" * 200, "y" * 200],
    )
    assert backend.dedup_key(envelope) == stable_dedup_key("x" * 200 + "/" + "y" * 200)
    assert len(backend.dedup_key(envelope)) <= 255
