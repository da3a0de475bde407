"""Envelopes as a relay reads them from the stream, made without a Client."""

from __future__ import annotations

from alertkit.model.event import AppEvent, Envelope


def envelope(
    message: str = "Payment declined for order 7",
    *,
    event_type: str = "shop.errors.PaymentDeclined",
    logger: str = "payments",
    template: str | None = "Payment declined for order %s",
    levelno: int = 40,
    tags: dict[str, str] | None = None,
) -> Envelope:
    event = AppEvent(
        api_key="",
        classification="issue",
        event_type=event_type,
        event_message=message,
        context_env_hostname="web-1",
        deployment_stage="production",
    )
    return Envelope(
        event=event, logger_name=logger, template=template, levelno=levelno, tags=tags or {}
    )
