# DO NOT EDIT. Generated from openapi.json by datamodel-code-generator 0.89.0.
# Change generated/openapi.json, then run `datamodel-codegen` from the repository root.

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from alertkit_generated._wire import WireModel
from msgspec import Meta, field

LogLevel: TypeAlias = Literal['debug', 'info', 'warning', 'error', 'fatal']


class StackTraceLine(WireModel):
    function: str | None = None
    line: int | None = None
    file: str | None = None


class InnerStackTrace(WireModel):
    type: str | None = None
    message: str | None = None
    trace_lines: list[StackTraceLine] | None = field(name='traceLines', default=None)


class CustomStringData(WireModel):
    custom_data1: str | None = field(name='customData1', default=None)
    custom_data2: str | None = field(name='customData2', default=None)
    custom_data3: str | None = field(name='customData3', default=None)
    custom_data4: str | None = field(name='customData4', default=None)
    custom_data5: str | None = field(name='customData5', default=None)
    custom_data6: str | None = field(name='customData6', default=None)
    custom_data7: str | None = field(name='customData7', default=None)
    custom_data8: str | None = field(name='customData8', default=None)
    custom_data9: str | None = field(name='customData9', default=None)
    custom_data10: str | None = field(name='customData10', default=None)


class CustomDoubleData(WireModel):
    custom_data1: float | None = field(name='customData1', default=None)
    custom_data2: float | None = field(name='customData2', default=None)
    custom_data3: float | None = field(name='customData3', default=None)
    custom_data4: float | None = field(name='customData4', default=None)
    custom_data5: float | None = field(name='customData5', default=None)
    custom_data6: float | None = field(name='customData6', default=None)
    custom_data7: float | None = field(name='customData7', default=None)
    custom_data8: float | None = field(name='customData8', default=None)
    custom_data9: float | None = field(name='customData9', default=None)
    custom_data10: float | None = field(name='customData10', default=None)


class CustomData(WireModel):
    string_data: CustomStringData | None = field(name='stringData', default=None)
    double_data: CustomDoubleData | None = field(name='doubleData', default=None)


class AppEvent(WireModel):
    api_key: Annotated[str, Meta(description='API key of the application (the only auth, no header).')] = field(
        name='apiKey'
    )
    classification: Annotated[
        str, Meta(description='"issue" (default), "log" for debug/info records, or custom.')
    ]
    event_type: Annotated[str, Meta(description="Exception's qualified name or the logger name.")] = field(
        name='eventType'
    )
    event_message: Annotated[str, Meta(description='Human-readable message.')] = field(
        name='eventMessage'
    )
    log_level: LogLevel | None = field(name='logLevel', default=None)
    event_time: Annotated[int, Meta(description='Milliseconds since the epoch.')] | None = field(
        name='eventTime', default=None
    )
    event_stacktrace: (
        Annotated[
            list[InnerStackTrace],
            Meta(description='One entry per exception in the cause/context chain.'),
        ]
        | None
    ) = field(name='eventStacktrace', default=None)
    event_user: str | None = field(name='eventUser', default=None)
    event_session: str | None = field(name='eventSession', default=None)
    context_app_version: Annotated[str, Meta(description='Application version.')] | None = field(
        name='contextAppVersion', default=None
    )
    deployment_stage: (
        Annotated[
            str, Meta(description='Deployment stage: development, staging, production or custom.')
        ]
        | None
    ) = field(name='deploymentStage', default=None)
    context_env_name: Annotated[str, Meta(description='Interpreter name, e.g. CPython.')] | None = (
        field(name='contextEnvName', default=None)
    )
    context_env_language: Annotated[str, Meta(description='Language, "Python".')] | None = field(
        name='contextEnvLanguage', default=None
    )
    context_env_version: Annotated[str, Meta(description='Interpreter version.')] | None = field(
        name='contextEnvVersion', default=None
    )
    context_env_hostname: Annotated[str, Meta(description='Host name.')] | None = field(
        name='contextEnvHostname', default=None
    )
    context_app_os: Annotated[str, Meta(description='Operating system.')] | None = field(
        name='contextAppOS', default=None
    )
    context_app_os_version: Annotated[str, Meta(description='Operating system version.')] | None = (
        field(name='contextAppOSVersion', default=None)
    )
    context_app_browser: Annotated[str, Meta(description='Browser name.')] | None = field(
        name='contextAppBrowser', default=None
    )
    context_app_browser_version: Annotated[str, Meta(description='Browser version.')] | None = (
        field(name='contextAppBrowserVersion', default=None)
    )
    context_data_center: Annotated[str, Meta(description='Data center.')] | None = field(
        name='contextDataCenter', default=None
    )
    context_data_center_region: Annotated[str, Meta(description='Data center region.')] | None = (
        field(name='contextDataCenterRegion', default=None)
    )
    context_tags: list[str] | None = field(name='contextTags', default=None)
    context_url: str | None = field(name='contextURL', default=None)
    context_operation_time_millis: int | None = field(
        name='contextOperationTimeMillis', default=None
    )
    context_cpu_percentage: (
        Annotated[float, Meta(description='CPU percent (the Python client sends a float).')] | None
    ) = field(name='contextCpuPercentage', default=None)
    context_memory_percentage: (
        Annotated[float, Meta(description='Memory percent (the Python client sends a float).')]
        | None
    ) = field(name='contextMemoryPercentage', default=None)
    context_cross_app_correlation_id: str | None = field(
        name='contextCrossAppCorrelationId', default=None
    )
    context_device: str | None = field(name='contextDevice', default=None)
    context_app_sku: str | None = field(name='contextAppSku', default=None)
    custom_properties: CustomData | None = field(name='customProperties', default=None)
    custom_segments: CustomData | None = field(name='customSegments', default=None)


class Error(WireModel):
    code: int | None = None
    message: str | None = None
    fields: str | None = None
