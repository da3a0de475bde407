"""The exceptions alertkit raises, all rooted at :class:`AlertkitError`.

::

    AlertkitError
    └── ConfigError (also ValueError)      bad option, URL or backend config, raised at construction
        └── MissingDependency               an optional backend needs a package that is not installed

Configuration errors are loud: they reach the caller of ``Client(...)``. Delivery failures are
quiet and are no exceptions: backends return outcomes (``Delivered``, ``RetryLater``,
``Rejected``), and the pipeline retries, spools or counts them; they never reach the application.
"""

from __future__ import annotations


class AlertkitError(Exception):
    """Root of every exception alertkit defines."""


class ConfigError(AlertkitError, ValueError):
    """A configuration value is wrong; the message names the option."""


class MissingDependency(ConfigError):
    """An optional backend's third-party package is not installed."""

    def __init__(self, scheme: str, package: str, extra: str) -> None:
        super().__init__(
            f"the {scheme!r} backend needs the {package!r} package: pip install 'alertkit[{extra}]'"
        )
        self.scheme = scheme
        self.package = package
