"""alertkit: one event model and one delivery pipeline from an application's errors to the people
who act on them (PagerDuty, Slack, email, an event API, Redis, a local inbox).

The public surface is exactly :data:`__all__`; everything else is an implementation detail.
"""

from __future__ import annotations

from alertkit import metrics
from alertkit.api import get_client, init
from alertkit.client import Client
from alertkit.errors import AlertkitError, ConfigError, DeliveryError, MissingDependency
from alertkit.handler import AlertHandler, get_logger
from alertkit.models import (
    AppEvent,
    CustomData,
    CustomDoubleData,
    CustomStringData,
    Envelope,
    Error,
    InnerStackTrace,
    StackTraceLine,
)
from alertkit.outcomes import Delivered, Dropped, Rejected, RetryLater, Skipped, Spooled
from alertkit.retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "AlertHandler",
    "AlertkitError",
    "AppEvent",
    "Client",
    "ConfigError",
    "CustomData",
    "CustomDoubleData",
    "CustomStringData",
    "Delivered",
    "DeliveryError",
    "Dropped",
    "Envelope",
    "Error",
    "InnerStackTrace",
    "MissingDependency",
    "Rejected",
    "RetryLater",
    "RetryPolicy",
    "Skipped",
    "Spooled",
    "StackTraceLine",
    "__version__",
    "get_client",
    "get_logger",
    "init",
    "metrics",
]
