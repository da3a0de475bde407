"""What the backends that speak HTTP share: the pooled transport and the client's defaults."""

from __future__ import annotations

from typing import ClassVar

from alertkit._http import HttpTransport
from alertkit.backends.base import BaseBackend, ClientContext


class WebBackend(BaseBackend):
    """A backend that POSTs to an HTTP API through the shared :class:`HttpTransport`.

    Subclasses set ``timeout``, ``connections`` (None: the client's) and ``verify`` in
    ``__init__``; ``default_connections`` sizes the pool when neither says.
    """

    default_connections: ClassVar[int] = 2
    timeout: float | None = None
    connections: int | None = None
    verify: bool = True
    app_name: str | None = None
    _transport: HttpTransport | None = None
    _context: ClientContext = ClientContext()

    def bind(self, context: ClientContext) -> None:
        """Take the client's timeout, pool size and application name where none was given."""
        self._context = context
        if self.timeout is None:
            self.timeout = context.timeout
        if self.connections is None:
            self.connections = context.connections
        self.app_name = context.app_name

    def _client(self) -> HttpTransport:
        if self._transport is None:
            self._transport = HttpTransport(
                connections=self.connections or self.default_connections,
                timeout=self.timeout or 10.0,
                verify=self.verify,
            )
        return self._transport

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
