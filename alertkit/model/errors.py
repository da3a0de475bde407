"""The exceptions alertkit raises, all rooted at :class:`AlertkitError`.

::

    AlertkitError
    ├── ConfigError (also ValueError)      bad option, URL or backend config, raised at construction
    │   └── MissingDependency               an optional backend needs a package that is not installed
    └── DeliveryError                       a backend could not deliver; carries the backend and response

Configuration errors are loud: they reach the caller of ``Client(...)``. Delivery errors are quiet:
backends translate them into outcomes, and the pipeline retries, spools or counts them; they never
reach the application.
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


class DeliveryError(AlertkitError):
    """A backend failed to deliver; raised inside backends and translated to an outcome."""

    def __init__(
        self, backend: str, message: str, *, status: int | None = None, response: str | None = None
    ) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.status = status
        self.response = response
