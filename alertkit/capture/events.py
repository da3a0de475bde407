"""Events with the client's defaults: the platform context, the sampler's readings, exceptions.

Every capture path (``create_new_app_event``, ``Client.log``, ``AlertHandler``, scopes, the bridge,
incident lifecycle) builds its ``AppEvent`` here, so the defaults of WIRE.md section 1 are filled
the same way everywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from alertkit.capture.environment import PlatformInfo, SystemSampler
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.levels import LEVEL_NUMBERS
from alertkit.model.stacktrace import (
    ExcInfo,
    build_stacktrace,
    exception_type_name,
    format_exception_text,
    safe_str,
)
from alertkit.model.values import plain_scalar, to_json_safe

#: ``Client.log`` keys with a place in the wire event (WIRE.md section 1); others become details.
LOG_KEYS: dict[str, str] = {
    "eventtype": "event_type",
    "eventmessage": "event_message",
    "user": "event_user",
    "session": "event_session",
    "time": "context_operation_time_millis",
    "url": "context_url",
    "corrid": "context_cross_app_correlation_id",
    "device": "context_device",
}


class EventFactory:
    """Builds events and envelopes with one client's defaults."""

    def __init__(
        self,
        *,
        api_key: str | None,
        app_version: str,
        deployment_stage: str,
        application_sku: str,
        tags: dict[str, str],
        platform: PlatformInfo,
        sampler: SystemSampler | None,
        data_center: str | None = None,
        data_center_region: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.app_version = app_version
        self.deployment_stage = deployment_stage
        self.application_sku = application_sku
        self.tags = tags
        self.context_tags = [f"{k}:{v}" if v else k for k, v in tags.items()]
        self.platform = platform
        self.sampler = sampler
        self.data_center = data_center
        self.data_center_region = data_center_region
        self._defaults = self._prepare_defaults()

    def new(
        self,
        level: str,
        classification: str,
        event_type: str,
        event_message: str,
        created: float | None = None,
    ) -> AppEvent:
        """An event with the defaults; ``level`` is a wire level, ``created`` epoch seconds."""
        # A copy of the prepared defaults with the per-event fields set: a third of the cost of
        # calling the constructor with every field (this runs once per event).
        event = msgspec.structs.replace(
            self._defaults,
            log_level=level,
            classification=classification,
            event_type=event_type,
            event_message=event_message,
            event_time=int((time.time() if created is None else created) * 1000),
        )
        sampler = self.sampler
        if self.context_tags:
            event.context_tags = list(self.context_tags)
        if sampler is not None:
            sampler.ensure_started()
            event.context_cpu_percentage = sampler.cpu_percent
            event.context_memory_percentage = sampler.memory_percent
        return event

    def _prepare_defaults(self) -> AppEvent:
        """The fields every event of this factory shares (the platform, the client's options)."""
        platform = self.platform
        return AppEvent(
            api_key=self.api_key or "",
            log_level="error",
            classification="issue",
            event_type="unknown",
            event_message="unknown",
            context_app_version=self.app_version,
            deployment_stage=self.deployment_stage,
            context_env_language=platform.language,
            context_env_name=platform.interpreter,
            context_env_version=platform.interpreter_version,
            context_env_hostname=platform.hostname,
            context_app_os=platform.os_name,
            context_app_os_version=platform.os_version,
            context_data_center=self.data_center,
            context_data_center_region=self.data_center_region,
            context_app_sku=self.application_sku or None,
        )

    @staticmethod
    def add_exception(event: AppEvent, info: ExcInfo) -> None:
        """Attach the exception chain; type and message fill in where they are still "unknown"."""
        # Compared as plain strings: the caller's str subclass may have an __eq__ that raises.
        if plain_scalar(event.event_type) == "unknown":
            event.event_type = exception_type_name(info[0])
        if plain_scalar(event.event_message) == "unknown":
            event.event_message = safe_str(info[1])
        event.event_stacktrace = build_stacktrace(info[1], info[2])

    def envelope(self, event: AppEvent, **fields: Any) -> Envelope:
        """Wrap an event for the pipeline, with the client's tags and its level number.

        The application may have set ``log_level`` to anything (a list is unhashable, an object's
        ``__eq__`` may raise): a level that is not a wire name routes as ``error`` and the limits
        leave it out of the wire event.
        """
        level = plain_scalar(event.log_level)
        levelno = LEVEL_NUMBERS.get(level, 40) if type(level) is str else 40
        envelope = Envelope(event=event, levelno=levelno, **fields)
        if not envelope.tags and self.tags:
            envelope.tags = dict(self.tags)
        return envelope

    @staticmethod
    def log_data(arg: Any) -> dict[str, Any]:
        """The data of a ``Client.log`` call, copied on the caller's thread (the application may
        change its dict afterwards): a mapping as a dict, anything else under ``"data"``; a
        mapping whose copy raises (a hostile ``__iter__`` or ``keys``) is sent under ``"data"``
        too, and arrives as its ``repr``."""
        try:
            if isinstance(arg, Mapping):
                return dict(arg)
        except Exception:
            pass
        return {"data": arg}

    def from_log_dict(
        self,
        data: Mapping[str, Any],
        level: str,
        classification: str,
        info: ExcInfo | None,
        created: float,
    ) -> Envelope:
        """The event of a Trakerr-style ``Client.log`` call: known keys fill wire fields."""
        event = self.new(level, classification, "unknown", "unknown", created)
        details: dict[str, Any] = {}
        for key, value in data.items():
            name = key if isinstance(key, str) else safe_str(key)  # str() of a key may raise
            attr = LOG_KEYS.get(name.lower())
            if attr is None:
                details[name] = value
            elif attr == "context_operation_time_millis":
                try:  # an application's object: its __int__ may raise anything
                    event.context_operation_time_millis = int(value)
                except Exception:
                    details[name] = value
            else:
                setattr(event, attr, safe_str(value))
        exc_text = None
        if info is not None:
            self.add_exception(event, info)
            exc_text = format_exception_text(info)
        return self.envelope(
            event, details=to_json_safe(details), exc_text=exc_text, created=created
        )


#: Set on an exception once an integration (or ``flush_after``) has reported it, so that nested
#: wrappers and the framework's own log line of the same exception do not report it again.
_REPORTED = "__alertkit_reported__"


def mark_reported(exc: BaseException) -> None:
    """Remember that ``exc`` has been reported (an exception that takes no attribute is not)."""
    with contextlib.suppress(Exception):
        setattr(exc, _REPORTED, True)


def was_reported(exc: BaseException | None) -> bool:
    """Whether ``exc`` has been reported already."""
    return exc is not None and getattr(exc, _REPORTED, False) is True
