"""The default client behind the module-level helpers (``alertkit.init``)."""

from __future__ import annotations

from typing import Any, cast

from alertkit.capture import submit
from alertkit.capture.breadcrumbs import install_logging
from alertkit.capture.client import Client

# Scopes and metrics find the default client through ``submit`` without importing this module.
submit.use_factory(Client)


def init(**kwargs: Any) -> Client:
    """Create the default client from ``Client`` keyword arguments, replacing any earlier one.

    Unlike a bare ``Client``, it reports uncaught exceptions unless told otherwise
    (``capture_uncaught=True``: every part of :mod:`alertkit.capture.uncaught`). Records that
    reach the root logger become breadcrumbs (``max_breadcrumbs``, ``breadcrumb_level``). The
    earlier default client, if any, is shut down first (bounded by its timeout).
    """
    kwargs.setdefault("capture_uncaught", True)
    client = Client(**kwargs)
    crumbs = client.breadcrumbs
    install_logging(crumbs.levelno if crumbs.max else None)
    previous = submit.replace_default(client)
    if previous is not None:
        cast(Client, previous).shutdown()  # only this module and its factory fill the slot
    return client


def get_client() -> Client:
    """The default client; made with default options (env fallbacks apply) on first use."""
    return cast(Client, submit.default_client())
