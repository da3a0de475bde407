"""alertkit: one event model and one delivery pipeline from an application's errors to the people
who act on them (PagerDuty, Slack, email, an event API, Redis, a local inbox).

The public surface is exactly :data:`__all__`; everything else is an implementation detail.
"""

from __future__ import annotations

import sys

from alertkit.capture import metrics, scope
from alertkit.capture.api import get_client, init
from alertkit.capture.breadcrumbs import add_breadcrumb
from alertkit.capture.client import Client
from alertkit.capture.flush import flush_after
from alertkit.capture.handler import AlertHandler, get_logger
from alertkit.model.errors import AlertkitError, ConfigError, MissingDependency
from alertkit.model.event import (
    AppEvent,
    CustomData,
    CustomDoubleData,
    CustomStringData,
    Envelope,
    Error,
    InnerStackTrace,
    StackTraceLine,
)
from alertkit.model.outcomes import Delivered, Dropped, Rejected, RetryLater, Skipped, Spooled
from alertkit.model.retry import RetryPolicy

__version__ = "0.1.0"

# The modules the docs tell users to import (``import alertkit.metrics``,
# ``from alertkit.scope import add_to_log``) keep those names; their code lives in the capture stage.
sys.modules.setdefault("alertkit.metrics", metrics)
sys.modules.setdefault("alertkit.scope", scope)

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
    "add_breadcrumb",
    "flush_after",
    "get_client",
    "get_logger",
    "init",
    "metrics",
]
