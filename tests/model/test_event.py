"""The generated wire model: exact Trakerr JSON (WIRE.md section 1), round trips, the public names."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from alertkit import AppEvent, CustomData, CustomDoubleData, CustomStringData
from alertkit.model.event import InnerStackTrace, StackTraceLine

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "trakerr-appevent.schema.json"


@pytest.fixture(scope="module")
def trakerr_schema() -> dict:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"missing file: {SCHEMA_PATH}")
    return json.loads(SCHEMA_PATH.read_text())


def full_event() -> AppEvent:
    return AppEvent(
        api_key="k",
        classification="issue",
        event_type="ValueError",
        event_message="bad",
        log_level="error",
        event_time=1_700_000_000_123,
        event_user="jill",
        event_session="s",
        context_app_version="2.4.1",
        deployment_stage="production",
        context_env_name="CPython",
        context_env_language="Python",
        context_env_version="3.11.7",
        context_env_hostname="web1",
        context_app_os="Linux",
        context_app_os_version="6.1",
        context_app_browser="b",
        context_app_browser_version="1",
        context_data_center="dc",
        context_data_center_region="r",
        context_tags=["a:b"],
        context_url="https://x",
        context_operation_time_millis=12,
        context_cpu_percentage=1.5,
        context_memory_percentage=40.0,
        context_cross_app_correlation_id="c",
        context_device="d",
        context_app_sku="sku",
        event_stacktrace=[
            InnerStackTrace(
                type="ValueError",
                message="bad",
                trace_lines=[StackTraceLine(function="f", line=3, file="app.py")],
            )
        ],
        custom_properties=CustomData(
            string_data=CustomStringData(custom_data1="x"),
            double_data=CustomDoubleData(custom_data10=2.5),
        ),
        custom_segments=CustomData(string_data=CustomStringData(custom_data2="y")),
    )


def test_full_event_validates_against_the_trakerr_schema(trakerr_schema: dict) -> None:
    data = full_event().to_dict()
    jsonschema.validate(data, trakerr_schema)
    assert set(data) == set(trakerr_schema["properties"]), "every wire field is produced"


def test_wire_names_come_from_the_spec_not_from_generic_camel_case() -> None:
    data = full_event().to_dict()
    for name in (
        "contextAppOS",
        "contextAppOSVersion",
        "contextURL",
        "apiKey",
        "eventStacktrace",
        "contextCrossAppCorrelationId",
        "customProperties",
    ):
        assert name in data
    assert data["eventStacktrace"][0]["traceLines"][0] == {
        "function": "f",
        "line": 3,
        "file": "app.py",
    }
    assert data["customProperties"] == {
        "stringData": {"customData1": "x"},
        "doubleData": {"customData10": 2.5},
    }


def test_none_fields_are_left_out_of_the_json() -> None:
    event = AppEvent(
        api_key="k", classification="issue", event_type="t", event_message="m", event_user=None
    )
    assert json.loads(event.to_json()) == {
        "apiKey": "k",
        "classification": "issue",
        "eventType": "t",
        "eventMessage": "m",
    }


def test_to_dict_from_dict_and_json_round_trip() -> None:
    event = full_event()
    assert AppEvent.from_dict(event.to_dict()) == event
    assert AppEvent.from_json(event.to_json()) == event


def test_python_attributes_are_snake_case() -> None:
    event = full_event()
    assert event.context_app_os == "Linux"
    event.custom_properties = CustomData(string_data=CustomStringData(custom_data1="checkout"))
    assert event.to_dict()["customProperties"]["stringData"]["customData1"] == "checkout"


def test_log_level_outside_the_enum_is_refused_when_decoding() -> None:
    with pytest.raises(Exception, match="logLevel"):
        AppEvent.from_dict(
            {
                "apiKey": "k",
                "classification": "c",
                "eventType": "t",
                "eventMessage": "m",
                "logLevel": "critical",
            }
        )


def test_generated_package_is_not_installed_as_generated() -> None:
    """The installed distribution ships the model as ``alertkit_generated``, never as a top-level
    ``generated``. Asked of the distribution's metadata, not of importability: a checkout's own
    ``generated/`` folder is importable from the working directory whatever the folder is called."""
    from importlib.metadata import packages_distributions

    provided = packages_distributions()
    assert "alertkit" in provided.get("alertkit_generated", [])
    assert "alertkit" not in provided.get("generated", [])
