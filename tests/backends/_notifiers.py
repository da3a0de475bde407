"""Helpers shared by the notifier tests (Slack, email, Telegram, WhatsApp): clients and events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import alertkit
from alertkit import Client, Envelope

FAST_RETRY = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05)


class PaymentDeclined(Exception):
    """The exception of the example title: ``[ERROR] PaymentDeclined: card refused — ...``."""


def _charge() -> None:
    raise PaymentDeclined("card refused")


@contextmanager
def client_factory() -> Iterator[Callable[..., Client]]:
    """Build clients for a test (fast retries, no sampler, no atexit) and shut them all down."""
    made: list[Client] = []

    def make(backends: list[Any], **options: Any) -> Client:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("app_name", "checkout")
        options.setdefault("deployment_stage", "production")
        options.setdefault("app_version", "2.4.1")
        client = Client(backends=backends, sample_system=False, register_atexit=False, **options)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.shutdown(2.0)


def declined(client: Client, **fields: Any) -> Envelope:
    """An error envelope of a raised ``PaymentDeclined`` with its stack trace."""
    try:
        _charge()
    except PaymentDeclined:
        event = client.create_new_app_event("error", exc_info=True)
    return client.envelope_for(event, **fields)


def warning(client: Client, message: str = "disk at 91%") -> Envelope:
    """A plain warning envelope without an exception."""
    event = client.create_new_app_event("warning", event_type="disk", event_message=message)
    return client.envelope_for(event)


def leaked(caplog: Any, secret: str) -> list[str]:
    """The log messages (and formatted exceptions) captured so far that contain ``secret``."""
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if secret in text:
            found.append(text)
    return found
