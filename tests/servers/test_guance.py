"""The Guance webhook mapping (WIRE.md section 5), without HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alertkit import Client
from alertkit.servers.guance import BadRequestError, read_guance
from alertkit.testing import MemoryBackend


@pytest.fixture
def client() -> Iterator[Client]:
    made = Client(backends=[MemoryBackend()], sample_system=False, register_atexit=False)
    yield made
    made.shutdown(1.0)


def test_trigger_maps_title_host_link_and_details(client: Client) -> None:
    alert = read_guance(
        client,
        {
            "df_title": "Disk full",
            "df_status": "Error",
            "df_message": "disk at 99%",
            "df_dimension_tags": {"host": "db1", "disk": "/var"},
            "df_fault_id": "f-9",
            "df_event_link": "https://guance.example/e/1",
            "date": 1767322800,
            "Result": 99,
        },
    )
    assert (alert.action, alert.dedup_key) == ("trigger", "f-9")
    envelope = alert.envelope
    assert envelope is not None
    assert envelope.incident_key == "f-9"
    assert envelope.payload == {
        "summary": "Disk full",
        "source": "db1",
        "severity": "error",
        "client": "Guance",
        "client_url": "https://guance.example/e/1",
    }
    assert envelope.details == {"status": "error", "message": "disk at 99%", "value": 99}
    assert envelope.tags == {"host": "db1", "disk": "/var"}
    assert envelope.event.event_time == 1767322800000


def test_resolve_needs_a_dedup_key(client: Client) -> None:
    body = {"df_title": "Disk full", "df_status": "ok", "df_event_id": "new-every-time"}
    with pytest.raises(BadRequestError) as caught:
        read_guance(client, body)
    assert caught.value.field == "df_monitor_checker_event_ref"


def test_trigger_without_a_dedup_key_leaves_it_to_the_backend(client: Client) -> None:
    alert = read_guance(
        client,
        {"df_title": "t", "df_status": "nodata", "df_monitor_checker_name": "no data from agent"},
    )
    assert alert.envelope is not None
    assert alert.envelope.incident_key is None
    assert alert.envelope.template == "no data from agent"
    assert alert.envelope.payload is not None
    assert alert.envelope.payload["severity"] == "warning"


@pytest.mark.parametrize(
    ("field", "value"), [("timestamp", 1e300), ("timestamp", 2**70), ("date", -5), ("date", 1e15)]
)
def test_a_timestamp_out_of_range_is_a_bad_request(
    client: Client, field: str, value: float
) -> None:
    body = {"df_title": "t", "df_status": "critical", "df_fault_id": "f-1", field: value}
    with pytest.raises(BadRequestError) as caught:
        read_guance(client, body)
    assert caught.value.field == field


def test_a_zero_or_textual_timestamp_leaves_the_event_time_alone(client: Client) -> None:
    for when in (0, "yesterday", None):
        alert = read_guance(client, {"df_title": "t", "df_status": "info", "timestamp": when})
        assert alert.envelope is not None
        assert alert.envelope.event.event_time > 1_700_000_000_000
