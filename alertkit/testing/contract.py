"""The backend contract as a test suite: every built-in backend passes it, and so can yours.

Subclass one of the three contracts in a pytest module and say how to build your backend against
a local endpoint; pytest then runs every ``test_*`` method of the contract:

* :class:`HttpBackendContract` for a backend that speaks HTTP (the stand-in server answers it);
* :class:`NetworkBackendContract` for another protocol (``make`` gets ``host:port``; say in
  :meth:`~BackendContract.healthy` how to start a real server of that protocol);
* :class:`BackendContract` for a backend without a network (a file, a queue in memory).

::

    from alertkit.testing.contract import HttpBackendContract

    class TestDiscordContract(HttpBackendContract):
        secrets = ("s3cretWebhookToken",)

        def make(self, endpoint, timeout):
            return DiscordBackend("123", "s3cretWebhookToken", endpoint=endpoint, timeout=timeout)

        def url(self, endpoint, timeout):
            return f"discord://123/s3cretWebhookToken?endpoint={endpoint}&timeout={timeout}"

        def bad_configs(self):
            yield (lambda: DiscordBackend("abc", "t"), "webhook_id")

What the contract pins (in the manner of apprise's shared URL tester):

* bad configuration raises :class:`~alertkit.model.errors.ConfigError` at construction, naming the option;
* the URL form and the object form build the same backend (same description, same request);
* ``repr()``, ``str()``, ``describe()``, every outcome's reason and every log line mask the secrets,
  even when the server echoes the request back in its error;
* one outcome per envelope for every answer a destination gives: 2xx delivered; 400, 401, 403,
  404 and 413 rejected; 429 retried after the server's ``Retry-After``; 500 and 503 retried; a
  reset, a refused connection and a hang retried, the hang within the backend's timeout;
* ``send`` never raises, ``close()`` is safe twice and bounded;
* every attribute the pipeline reads (:class:`~alertkit.backends.base.Backend`) is there, with
  its declared type (:func:`contract_violations`).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import UnionType
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from alertkit.backends.base import Backend, ClientContext
from alertkit.model.errors import ConfigError
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater
from alertkit.testing.stand_in import Reply, Request, ScriptedServer, free_port

#: The answer a destination gives, and the outcome class the contract expects for it.
STATUS_OUTCOMES: dict[int, type[Outcome]] = {
    400: Rejected,
    401: Rejected,
    403: Rejected,
    404: Rejected,
    413: Rejected,
    429: RetryLater,
    500: RetryLater,
    503: RetryLater,
}
#: How much longer than its own timeout a backend may take to give up on a hanging server.
HANG_SLACK = 3.0


def _fits(value: object, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (the few forms the Backend protocol uses)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is ClassVar:
        return _fits(value, args[0])
    if origin in (Union, UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(_fits(item, arg) for item, arg in zip(value, args, strict=True))
        )
    if origin is frozenset:
        return isinstance(value, frozenset) and all(_fits(item, args[0]) for item in value)
    if hint is float:  # an int is a float here, as for mypy; a bool is neither
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def contract_violations(backend: object) -> list[str]:
    """Each attribute or method of :class:`~alertkit.backends.base.Backend` that ``backend``
    lacks or holds with another type than the protocol declares; empty when it keeps them all."""
    wrong = []
    for attribute, hint in get_type_hints(Backend).items():
        if not hasattr(backend, attribute):
            wrong.append(f"{attribute}: missing")
        elif not _fits(getattr(backend, attribute), hint):
            wrong.append(f"{attribute}: {getattr(backend, attribute)!r} is not {hint}")
    for method in ("bind", "send", "close", "mask", "counters"):
        if not callable(getattr(backend, method, None)):
            wrong.append(f"{method}(): missing")
    return wrong


class BackendContract:
    """The contract every backend keeps; a subclass implements :meth:`make` and :meth:`url`."""

    #: Secret values the backend built by :meth:`make` holds; none may be shown anywhere.
    secrets: ClassVar[tuple[str, ...]] = ()
    #: ``"http"``: the stand-in HTTP server; ``"tcp"``: raw sockets; ``"none"``: no network.
    transport: ClassVar[Literal["http", "tcp", "none"]] = "none"
    #: The 2xx status a healthy destination answers with.
    ok_status: ClassVar[int] = 200
    #: The body of that answer (some APIs answer ``{"ok": true}`` and judge by it).
    ok_body: ClassVar[bytes | str | dict[str, Any]] = b"{}"
    #: The per-request timeout the backend is built with (seconds); bounds the hang test.
    timeout: ClassVar[float] = 1.0

    # -- what a subclass says ------------------------------------------------------------------

    def make(self, endpoint: str, timeout: float) -> Backend:
        """The backend, sending to ``endpoint`` (a base URL for HTTP, ``host:port`` for TCP)."""
        raise TypeError(f"{type(self).__name__} must define make(endpoint, timeout)")

    def url(self, endpoint: str, timeout: float) -> str:
        """The URL form of :meth:`make`'s backend (``Client(backends=[...])`` takes both)."""
        raise TypeError(f"{type(self).__name__} must define url(endpoint, timeout)")

    def bad_configs(self) -> Iterable[tuple[Callable[[], object], str]]:
        """Constructions that must fail, each with the option name its error must mention."""
        return ()

    @contextmanager
    def healthy(self) -> Iterator[str]:
        """An endpoint that accepts everything: the stand-in HTTP server answering ``ok_status``;
        a TCP backend overrides this with a real server (SMTP, Redis ...)."""
        if self.transport == "tcp":
            raise TypeError(f"{type(self).__name__} must define healthy() for its protocol")
        if self.transport == "none":
            yield ""
            return
        with ScriptedServer([Reply(self.ok_status, self.ok_body)]) as server:
            yield server.url

    def envelope(self) -> Envelope:
        """The event sent in every test: an error with a message and a type."""
        event = AppEvent(
            api_key="",
            classification="issue",
            event_type="PaymentDeclined",
            event_message="card refused for order 1042",
            log_level="error",
            event_time=int(time.time() * 1000),
        )
        return Envelope(event=event)

    def bound(self, endpoint: str) -> Backend:
        """:meth:`make`'s backend, bound to a client context as the pipeline would."""
        backend = self.make(endpoint, self.timeout)
        backend.bind(self.context())
        return backend

    def context(self) -> ClientContext:
        return ClientContext(api_key="client-key", timeout=self.timeout, app_name="checkout")

    # -- helpers -------------------------------------------------------------------------------

    def _echo(
        self, status: int, headers: dict[str, str] | None = None
    ) -> Callable[[Request], Reply]:
        """A script answering ``status`` and echoing the request (secrets included) in the body,
        as real services do in their error messages."""

        def answer(request: Request) -> Reply:
            text = f"bad request to {request.path}: {request.body[:500].decode('utf-8', 'replace')}"
            body: bytes | str | dict[str, Any] = (
                self.ok_body if 200 <= status < 300 else {"message": text, "error": text}
            )
            return Reply(status, body, headers or {})

        return answer

    def _outcomes(self, backend: Backend, count: int = 1) -> Sequence[Outcome]:
        batch = [self.envelope() for _ in range(count)]
        outcomes = backend.send(batch)
        assert len(outcomes) == count, f"{count} envelopes, {len(outcomes)} outcomes"
        return outcomes

    def _assert_masked(self, *texts: object) -> None:
        for text in texts:
            for secret in self.secrets:
                assert secret not in str(text), f"secret {secret[:3]}... shown in {text!r}"

    @contextmanager
    def _all_logs(self) -> Iterator[list[str]]:
        """Every log line any logger writes meanwhile, at every level, formatted with tracebacks."""
        lines: list[str] = []
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(formatter.format(record))

        root = logging.getLogger()
        handler, level = Keep(logging.DEBUG), root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            yield lines
        finally:
            root.removeHandler(handler)
            root.setLevel(level)

    # -- the contract --------------------------------------------------------------------------

    def test_declares_every_contract_attribute_with_its_type(self) -> None:
        backend = self.bound(self._unused_endpoint())
        try:
            assert contract_violations(backend) == []
            assert backend.max_batch >= 1 and backend.max_concurrency >= 1
            assert backend.rate_limit is None or min(backend.rate_limit) > 0
        finally:
            backend.close()

    def test_bad_config_raises_config_error_naming_the_option(self) -> None:
        for build, option in self.bad_configs():
            with pytest.raises(ConfigError) as caught:
                build()
            assert option in str(caught.value), f"{caught.value} does not name {option!r}"
            self._assert_masked(caught.value)

    def test_url_and_object_forms_agree(self) -> None:
        with ScriptedServer([Reply(self.ok_status, self.ok_body)]) as server:
            endpoint = self._endpoint(server)
            url = self.url(endpoint, self.timeout)
            from alertkit.backends.registry import create_backend

            by_object, by_url = self.bound(endpoint), create_backend(url)
            by_url.bind(self.context())
            try:
                assert type(by_url) is type(by_object)
                assert repr(by_url) == repr(by_object)
                assert (by_url.name, by_url.min_level) == (by_object.name, by_object.min_level)
                if self.transport == "http":
                    envelope = self.envelope()
                    by_object.send([envelope])
                    by_url.send([envelope])
                    first, second = server.requests[-2:]
                    assert (first.path, first.body) == (second.path, second.body)
            finally:
                by_object.close()
                by_url.close()

    def test_secrets_are_masked_in_repr_reasons_and_logs(self) -> None:
        assert self.secrets or self.transport == "none", "name the backend's secrets"
        with self._all_logs() as lines, ScriptedServer(self._echo(400)) as server:
            backend = self.bound(self._endpoint(server))
            try:
                self._assert_masked(repr(backend), str(backend), self._describe(backend))
                if self.transport != "none":
                    reasons = [getattr(o, "reason", "") for o in self._outcomes(backend)]
                    server.set_script(self._echo(500))
                    reasons += [getattr(o, "reason", "") for o in self._outcomes(backend)]
                    self._assert_masked(*reasons)
            finally:
                backend.close()
        self._assert_masked(*lines)

    def test_a_healthy_destination_delivers_each_envelope(self) -> None:
        with self.healthy() as endpoint:
            backend = self.bound(endpoint)
            try:
                outcomes = self._outcomes(backend, 3)
            finally:
                backend.close()
        assert all(isinstance(o, Delivered) for o in outcomes), outcomes

    def test_close_is_safe_twice_and_bounded(self) -> None:
        with self._failing("hang") if self.transport != "none" else _nothing() as endpoint:
            backend = self.bound(endpoint)
            raised: list[BaseException] = []
            sender: threading.Thread | None = None
            if self.transport != "none":

                def send() -> None:
                    try:
                        backend.send([self.envelope()])
                    except BaseException as exc:  # send() must answer, even when closed under it
                        raised.append(exc)

                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                time.sleep(0.1)  # a request in flight while closing
            started = time.monotonic()
            backend.close()
            backend.close()
            assert time.monotonic() - started < self.timeout + HANG_SLACK
            if sender is not None:
                sender.join(self.timeout + HANG_SLACK)
            assert raised == [], f"send() raised while the backend was closed: {raised!r}"

    # -- endpoints -----------------------------------------------------------------------------

    def _unused_endpoint(self) -> str:
        """An endpoint nothing will be sent to (the backend is only built)."""
        if self.transport == "none":
            return ""
        port = free_port()
        return f"http://127.0.0.1:{port}" if self.transport == "http" else f"127.0.0.1:{port}"

    def _endpoint(self, server: ScriptedServer) -> str:
        if self.transport == "tcp":
            return f"127.0.0.1:{server.port}"
        return server.url

    @staticmethod
    def _describe(backend: Backend) -> str:
        describe = getattr(backend, "describe", None)
        return describe() if callable(describe) else ""

    @contextmanager
    def _failing(self, failure: str) -> Iterator[str]:
        """An endpoint that resets, refuses or hangs every connection."""
        if failure == "refused":
            port = free_port()
            yield f"http://127.0.0.1:{port}" if self.transport == "http" else f"127.0.0.1:{port}"
            return
        if self.transport == "http":
            reply = Reply(hang=True) if failure == "hang" else Reply(reset=True)
            with ScriptedServer([reply]) as server:
                yield server.url
            return
        with _RawServer(reset=failure == "reset") as port:
            yield f"127.0.0.1:{port}"


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


class _RawServer:
    """A TCP server that resets each connection or holds it open without a word."""

    def __init__(self, *, reset: bool) -> None:
        self._reset = reset
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> int:
        self._thread.start()
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for conn in self._held:
            conn.close()
        self._sock.close()

    def _serve(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            if self._reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self._held.append(conn)


class NetworkBackendContract(BackendContract):
    """The contract plus the network's failures, for a backend that speaks a protocol of its own
    over TCP: ``make`` gets ``host:port``, and :meth:`healthy` starts a real server."""

    transport: ClassVar[Literal["http", "tcp", "none"]] = "tcp"

    @pytest.mark.parametrize("failure", ["reset", "refused", "hang"])
    def test_connection_failures_are_retried_within_the_timeout(self, failure: str) -> None:
        with self._failing(failure) as endpoint:
            backend = self.bound(endpoint)
            started = time.monotonic()
            try:
                outcomes = self._outcomes(backend, 2)
            finally:
                elapsed = time.monotonic() - started
                backend.close()
        assert all(isinstance(o, RetryLater) for o in outcomes), f"{failure}: {outcomes!r}"
        assert elapsed < self.timeout * 2 + HANG_SLACK, f"{failure}: took {elapsed:.1f}s"
        self._assert_masked(*[o.reason for o in outcomes if isinstance(o, RetryLater)])


class HttpBackendContract(NetworkBackendContract):
    """The network contract plus every status an HTTP destination answers with; ``make`` gets the
    stand-in server's base URL (``http://127.0.0.1:PORT``)."""

    transport: ClassVar[Literal["http", "tcp", "none"]] = "http"

    @pytest.mark.parametrize("status", sorted(STATUS_OUTCOMES))
    def test_every_status_gives_its_outcome(self, status: int) -> None:
        expected = STATUS_OUTCOMES[status]
        headers = {"Retry-After": "7"} if status in (429, 503) else {}
        with self._all_logs() as lines, ScriptedServer(self._echo(status, headers)) as server:
            backend = self.bound(self._endpoint(server))
            try:
                outcomes = self._outcomes(backend, 2)
            finally:
                backend.close()
        for outcome in outcomes:
            assert isinstance(outcome, expected), f"HTTP {status}: {outcome!r}"
            reason = getattr(outcome, "reason", "")
            assert str(status) in reason, f"the reason {reason!r} does not say HTTP {status}"
            if status == 429:
                assert isinstance(outcome, RetryLater) and outcome.delay == 7.0, outcome
        self._assert_masked(*lines)
