"""What the backends that speak HTTP share: the pooled transport and the client's defaults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypedDict

from alertkit.backends._http import HttpResponse, HttpTransport, TransportError, classify_response
from alertkit.backends._options import read_options, read_rate
from alertkit.backends._redact import masked_url
from alertkit.backends.base import BaseBackend, ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Outcome, Rejected, RetryLater


class WebOptions(TypedDict, total=False):
    """The keyword options every HTTP backend takes (see :class:`WebBackend`)."""

    timeout: float | None
    connections: int | None
    verify: bool
    name: str | None
    min_level: str | int | None
    rate_limit: tuple[int, float] | None


class WebBackend(BaseBackend):
    """A backend that POSTs each event to an HTTP API through the shared :class:`HttpTransport`.

    Subclasses build the request (:meth:`request`) and may read the answer their own way
    (:meth:`outcome`); the loop over a batch, the masking of reasons and the handling of an
    unreachable or rate-limiting destination are here, once. ``default_connections`` sizes the
    pool when neither the backend nor the client says.

    Args (keyword-only, the same for every HTTP backend, :class:`WebOptions`):
        timeout: per-request timeout in seconds; default: the client's.
        connections: keep-alive connections in the pool; default: the client's.
        verify: verify TLS certificates (keep it on outside tests).
        name: the backend's name in stats and results (default: its scheme).
        min_level: the lowest level sent here (``"warning"``, ``"error"`` or a number).
        rate_limit: ``(events, seconds)``, the most this destination is sent in that time,
            instead of the backend's default (``?rate=20/s`` or ``?rate=120/min`` in a URL);
            relays share it fleet-wide (:mod:`alertkit.relay.ratelimit`).

    Raises:
        ConfigError: a timeout or pool size that is not positive, naming the option.
    """

    default_connections: ClassVar[int] = 2
    timeout: float | None = None
    connections: int | None = None
    verify: bool = True
    app_name: str | None = None
    _transport: HttpTransport | None = None
    _context: ClientContext = ClientContext()

    def __init__(
        self,
        *,
        timeout: float | None = None,
        connections: int | None = None,
        verify: bool = True,
        name: str | None = None,
        min_level: str | int | None = None,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(name=name, min_level=min_level)
        self._check_transport_options(timeout, connections)
        if rate_limit is not None:
            if not (len(rate_limit) == 2 and min(rate_limit) > 0):
                raise ConfigError(f"{self.scheme}: rate_limit must be (events, seconds), both > 0")
            self.rate_limit = (int(rate_limit[0]), float(rate_limit[1]))
        self.timeout = timeout
        self.connections = connections
        self.verify = verify
        self.app_name = None
        self._transport = None
        self._context = ClientContext()

    @staticmethod
    def _http_url(label: str, option: str, value: object, example: str = "") -> str:
        """``value`` when it is an http(s) URL.

        Raises:
            ConfigError: naming the option (and ``example``), with the value masked.
        """
        if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
            hint = f" ({example})" if example else f", got {masked_url(value)}"
            raise ConfigError(f"{label}: {option} must start with http:// or https://{hint}")
        return value

    @classmethod
    def _url_options(
        cls,
        query: Mapping[str, str],
        *,
        text: Sequence[str] = (),
        flag: Sequence[str] = (),
        secret: Sequence[str] = (),
        label: str | None = None,
    ) -> dict[str, Any]:
        """``query`` read with the options every HTTP backend takes (``timeout``, ``connections``,
        ``verify``, ``rate``) besides the backend's own ``text`` and ``flag`` options; ``rate``
        comes back as ``rate_limit``.

        Raises:
            ConfigError: an unknown option or a value of the wrong kind, naming the option.
        """
        options = read_options(
            label or cls.scheme,
            query,
            text=(*text, "rate"),
            number=("timeout",),
            count=("connections",),
            flag=("verify", *flag),
            secret=secret,
        )
        if "rate" in options:
            options["rate_limit"] = read_rate(label or cls.scheme, options.pop("rate"))
        return options

    def _check_transport_options(self, timeout: float | None, connections: int | None) -> None:
        """Refuse a non-positive timeout or pool size at construction.

        Raises:
            ConfigError: naming the option.
        """
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"{self.scheme}: timeout must be positive")
        if connections is not None and connections < 1:
            raise ConfigError(f"{self.scheme}: connections must be at least 1")

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

    def request(self, envelope: Envelope) -> tuple[str, bytes, dict[str, str]]:
        """URL, body and headers of the POST for ``envelope``; ValueError rejects the event."""
        raise TypeError(f"{type(self).__name__} does not implement request()")

    def outcome(self, response: HttpResponse) -> Outcome:
        """What the answer means: the common HTTP vocabulary, with secrets masked in reasons
        (a server may quote the request back)."""
        outcome = classify_response(response)
        if isinstance(outcome, RetryLater):
            return RetryLater(self.mask(outcome.reason), outcome.delay)
        if isinstance(outcome, Rejected):
            return Rejected(self.mask(outcome.reason))
        return outcome

    def rate_limited(self, response: HttpResponse) -> bool:
        """Whether this answer means the rest of the batch would be refused too."""
        return response.status == 429

    def held_back(self) -> RetryLater | None:
        """A RetryLater for every envelope not yet sent, when the destination has asked for a
        pause that is still running (Sentry's rate limits); None: send."""
        return None

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        transport = self._client()
        outcomes: list[Outcome] = []
        for index, envelope in enumerate(batch):
            held = self.held_back()
            if held is not None:  # no request the destination has said it would refuse
                outcomes.extend([held] * (len(batch) - index))
                break
            try:
                url, body, headers = self.request(envelope)
            except (ValueError, TypeError) as exc:  # an envelope no request can be made of
                outcomes.append(Rejected(self.mask(f"{self.scheme}: {exc}")))
                continue
            try:
                response = transport.post(url, body, headers)
            except TransportError as exc:
                # Unreachable: the rest of the batch would wait out the same timeout one by one,
                # so they are all retried later together.
                outcomes.extend([RetryLater(self.mask(str(exc)))] * (len(batch) - index))
                break
            outcome = self.outcome(response)
            outcomes.append(outcome)
            if isinstance(outcome, RetryLater) and self.rate_limited(response):
                outcomes.extend([outcome] * (len(batch) - index - 1))
                break
        return outcomes
