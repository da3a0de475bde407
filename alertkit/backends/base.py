"""The backend protocol and the small base class every built-in backend uses.

A backend turns a batch of envelopes into one outcome per envelope and nothing else: queueing,
batching, retry and spooling live once, above it, in :mod:`alertkit.delivery.worker`. The base class adds the
metadata the registry and the pipeline need (URL scheme, secret fields, kinds, batch size), the common
options (``name``, ``min_level``), URL parsing, and a ``repr()`` that never shows a secret.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import msgspec

from alertkit.backends._options import reject_unknown
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.levels import level_number
from alertkit.model.outcomes import Outcome
from alertkit.model.retry import RetryPolicy

if TYPE_CHECKING:
    from urllib.parse import SplitResult

MASK = "****"


class ClientContext(msgspec.Struct, frozen=True):
    """What a backend may take from the client it serves (``Backend.bind``)."""

    api_key: str | None = None
    connections: int = 4
    timeout: float = 10.0
    hostname: str = ""
    app_name: str | None = None
    app_version: str = ""
    deployment_stage: str = ""


@runtime_checkable
class Backend(Protocol):
    """Everything the pipeline reads or calls on a destination: this is the whole contract.

    :class:`BaseBackend` gives every attribute below its default, so a subclass sets only what
    differs. An object passed to ``Client(backends=[...])`` that implements only ``send`` and
    ``close`` is wrapped by :func:`~alertkit.backends.registry.create_backend` in
    :class:`AdaptedBackend`, which fills in the same defaults.
    """

    #: URL scheme of the backend's config strings (``"pagerduty"``).
    scheme: ClassVar[str]
    #: The backend's name in stats, results and logs (default: its scheme).
    name: str
    #: The lowest level (a :mod:`logging` number) this backend is sent; 0: every level.
    min_level: int
    #: Envelope kinds it takes (``"event"``; PagerDuty also ``"resolve"`` ...); others are skipped.
    kinds: frozenset[str]
    #: The most envelopes handed to one ``send`` call (default 1).
    max_batch: int
    #: Seconds a worker may hold a partial batch back for more events to join it (0: send what
    #: is queued at once). Under load batches fill without waiting; this saves requests when
    #: events trickle in.
    batch_delay: float
    #: The most ``send`` calls in flight at once (worker threads; default 4).
    max_concurrency: int
    #: Deliver in capture order: one thread, and nothing new is sent while an earlier event waits
    #: for its retry (head-of-line blocking, for destinations where order carries meaning).
    ordered: bool
    #: Backends that page or message people get storm control (one alert per fingerprint and
    #: window, then a digest); sinks that store or aggregate events get every event.
    storm_controlled: bool
    #: Whether what it sends includes the breadcrumb trail. When no destination of a client does
    #: (and no hook of the application's sees the event), its errors take no trail: making,
    #: scrubbing and bounding 50 crumbs per error would be work nobody reads.
    sends_breadcrumbs: bool
    #: ``(events, seconds)``: the most this backend is sent in that time (the worker waits); None:
    #: no pacing.
    rate_limit: tuple[int, float] | None
    #: A retry policy for this backend only; None: the client's.
    retry: RetryPolicy | None

    def bind(self, context: ClientContext) -> None:
        """Take defaults from the client (API key, pool size ...); called once, before any send."""

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        """Deliver ``batch``; return one outcome per envelope, in order. Must not raise on delivery errors."""

    def close(self) -> None:
        """Release connections and files. Idempotent."""

    def mask(self, text: str) -> str:
        """``text`` with every secret of this backend replaced by ``****`` (reasons, log lines)."""

    def counters(self) -> dict[str, int]:
        """Counts of the backend's own, merged into its ``stats()`` (a stream's evictions)."""


class BaseBackend:
    """Convenience base: metadata as class attributes, common options, masked ``repr``.

    Subclasses set ``scheme``, or ``schemes`` when they answer to several (``("smtp", "smtps")``:
    the first is then the ``scheme`` that names the backend), list secret attribute names in ``secret_fields``, implement ``send``, and implement
    ``_options_from_url`` to turn a parsed URL into keyword arguments.
    """

    scheme: ClassVar[str] = ""
    schemes: ClassVar[tuple[str, ...]] = ()
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # The defaults of the contract declared (and explained) on :class:`Backend`.
    kinds: frozenset[str] = frozenset({"event"})
    max_batch: int = 1
    batch_delay: float = 0.0
    max_concurrency: int = 4
    ordered: bool = False
    storm_controlled: bool = False
    sends_breadcrumbs: bool = True
    rate_limit: tuple[int, float] | None = None
    retry: RetryPolicy | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.schemes and "scheme" not in cls.__dict__:
            cls.scheme = cls.schemes[0]

    def __init__(self, *, name: str | None = None, min_level: str | int | None = None) -> None:
        self.name = name or self.scheme
        try:
            self.min_level = 0 if min_level is None else level_number(min_level)
        except ValueError as exc:
            raise ConfigError(f"{self.scheme}: min_level: {exc}") from None
        self._closed = False
        self._close_lock = threading.Lock()

    # -- construction from URLs ------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> BaseBackend:
        """Build the backend from its URL form; keyword ``overrides`` win over the URL.

        Raises:
            ConfigError: the URL is malformed or names an unknown option.
        """
        from urllib.parse import parse_qsl, urlsplit

        try:
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
        except ValueError:  # urlsplit's message may quote the host, and a password with it
            from alertkit.backends._redact import masked_url

            raise ConfigError(f"{cls.scheme}: malformed URL {masked_url(url)}") from None
        common: dict[str, Any] = {}
        for key in ("name", "min_level"):
            if key in query:
                common[key] = query.pop(key)
        options = cls._options_from_url(parts, query)
        return cls(**{**common, **options, **overrides})

    @classmethod
    def _options_from_url(cls, parts: SplitResult, query: dict[str, str]) -> dict[str, Any]:
        raise ConfigError(f"{cls.scheme}: this backend cannot be configured from a URL")

    @staticmethod
    def _reject_unknown(scheme: str, query: Mapping[str, str], known: Sequence[str]) -> None:
        """Refuse an option the backend does not take (:func:`~alertkit.backends._options.read_options`
        does this too, and converts numbers and yes/no flags)."""
        reject_unknown(scheme, query, known)

    # -- the protocol ------------------------------------------------------------------------------

    def bind(self, context: ClientContext) -> None:
        """Take defaults from the client; the base keeps nothing."""

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} does not implement send()")

    def close(self) -> None:
        """Mark closed and call :meth:`_close` once, however often this is called."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._close()

    def _close(self) -> None:
        """Release resources; called once by :meth:`close`."""

    def counters(self) -> dict[str, int]:
        """No counts of its own."""
        return {}

    # -- safe description --------------------------------------------------------------------------

    def describe(self) -> str:
        """A one-line description with every secret masked, safe for logs and ``repr``."""
        return f"{self.scheme}://"

    def mask(self, text: str) -> str:
        """Replace every secret value of this backend that occurs in ``text`` with ``****``."""
        for field_name in self.secret_fields:
            secret = getattr(self, field_name, None)
            if isinstance(secret, str) and len(secret) >= 4:
                text = text.replace(secret, MASK)
        return text

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} {self.mask(self.describe())}>"


class AdaptedBackend(BaseBackend):
    """A user's object that implements only part of :class:`Backend`, completed with the defaults.

    ``send`` and ``close`` are required; every other attribute of the contract is taken from the
    object when it has one and from :class:`BaseBackend` otherwise, once, here, so that the
    pipeline reads plain attributes. ``wrapped`` is the object itself.
    """

    scheme = "object"

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        name = getattr(wrapped, "name", None)
        super().__init__(
            name=name if isinstance(name, str) and name else type(wrapped).__name__.lower(),
            min_level=getattr(wrapped, "min_level", None),
        )
        for attribute in (
            "kinds",
            "max_batch",
            "batch_delay",
            "max_concurrency",
            "ordered",
            "storm_controlled",
            "sends_breadcrumbs",
            "rate_limit",
            "retry",
        ):
            if hasattr(wrapped, attribute):
                setattr(self, attribute, getattr(wrapped, attribute))

    def bind(self, context: ClientContext) -> None:
        bind = getattr(self.wrapped, "bind", None)
        if callable(bind):
            bind(context)

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        result: Sequence[Outcome] = self.wrapped.send(batch)
        return result

    def _close(self) -> None:
        self.wrapped.close()

    def mask(self, text: str) -> str:
        mask = getattr(self.wrapped, "mask", None)
        return str(mask(text)) if callable(mask) else text

    def __repr__(self) -> str:
        return self.mask(repr(self.wrapped))
