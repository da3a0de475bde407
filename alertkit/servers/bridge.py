"""The bridge: monitoring webhooks (Guance first) into PagerDuty through the alertkit pipeline.

``create_app`` returns a plain WSGI application, so it runs under gunicorn or any WSGI server;
``serve`` runs it on waitress (the ``bridge`` extra; :mod:`alertkit.servers.bridge_server` says why and
how it is hardened), which is what ``alertkit bridge`` does. Routes:

* ``POST /guance``: a Guance webhook body, mapped by :mod:`alertkit.servers.guance` to a trigger or a
  resolve sharing one dedup key.
* ``POST /events``: an AppEvent JSON (WIRE.md section 1), delivered like ``send_event_async``.

The token travels as ``Authorization: Bearer <token>`` or ``?token=<token>`` (Guance can only put
it in the URL). Answers: 202 once the event is queued (never waiting on the destination), 401
without the token, 400 with ``{"error": ..., "field": ...}`` for any bad body (malformed, not an
object, nested too deeply, NaN or an infinite number), 413 over 1 MB, 404/405 for other paths and
methods.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import re
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from alertkit.backends.base import Backend
from alertkit.capture.client import Client
from alertkit.delivery.pipeline import Results
from alertkit.model.errors import ConfigError
from alertkit.model.event import AppEvent, decode_event
from alertkit.model.outcomes import Dropped
from alertkit.servers.guance import BadRequestError, read_guance

if TYPE_CHECKING:
    from alertkit.servers.bridge_server import BridgeServer

log = logging.getLogger("alertkit.bridge")

MAX_BODY = 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024
ROUTES = frozenset({"/guance", "/events"})
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BridgeApp:
    """The WSGI application (callable as ``app(environ, start_response)``).

    Attributes:
        client: the client the events go through; ``close()`` shuts it down if the app made it.
    """

    def __init__(self, client: Client, token: str, *, owns_client: bool) -> None:
        self.client = client
        self._token = token.encode()
        self._owns_client = owns_client

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, body = self._handle(environ)
        except BadRequestError as exc:
            status, body = 400, {"error": str(exc), "field": exc.field}
        except RecursionError:  # json, msgspec or the mapping on a deeply nested body
            status, body = 400, {"error": "JSON nested too deeply", "field": None}
        except Exception as exc:  # never a stack trace to the webhook sender
            log.warning("bridge: internal error: %r", exc)
            status, body = 500, {"error": "internal error"}
        data = json.dumps(body).encode()
        start_response(
            f"{status} {_REASONS.get(status, 'Error')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    def _handle(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path = environ.get("PATH_INFO") or "/"
        route = {"/guance": self._guance, "/events": self._event}.get(path.rstrip("/") or "/")
        if route is None:
            # the path is not echoed: a mistyped URL (``/guance&token=...``) may carry the token
            return 404, {"error": "no such path; POST /guance or /events"}
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, {"error": "use POST"}
        if not self._authorized(environ):
            return 401, {"error": "missing or wrong token (Authorization: Bearer or ?token=)"}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"error": "bad Content-Length", "field": None}
        if length > MAX_BODY:
            _drain(environ["wsgi.input"], length)
            return 413, {"error": f"body over {MAX_BODY} bytes"}
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            data = (
                json.loads(raw, parse_constant=_no_constant, parse_float=_finite) if raw else None
            )
        except ValueError as exc:
            raise BadRequestError(f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequestError("the body must be a JSON object")
        return route(data)

    def _authorized(self, environ: dict[str, Any]) -> bool:
        header = environ.get("HTTP_AUTHORIZATION") or ""
        scheme, _, value = header.partition(" ")
        candidates = [value.strip()] if scheme.lower() == "bearer" else []
        candidates += parse_qs(environ.get("QUERY_STRING") or "").get("token", [])
        return any(hmac.compare_digest(c.encode(), self._token) for c in candidates)

    # -- routes ----------------------------------------------------------------------------------

    def _guance(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        alert = read_guance(self.client, data)
        answer = {"status": "queued", "action": alert.action, "dedup_key": alert.dedup_key}
        if alert.envelope is None:
            return self._queued(self.client.resolve(alert.dedup_key or ""), answer)
        return self._queued(self.client.send_event_async(alert.envelope), answer)

    def _event(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            event = decode_event(json.dumps(data).encode(), AppEvent)
        except msgspec.MsgspecError as exc:
            raise BadRequestError(f"not an AppEvent: {exc}", _field_of(str(exc))) from None
        envelope = self.client.envelope_for(event)
        return self._queued(
            self.client.send_event_async(envelope),
            {"status": "queued", "event_id": envelope.event_id},
        )

    @staticmethod
    def _queued(future: Future[Results], answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """202, or 503 when the pipeline refused the event at once (intake full, shut down)."""
        if future.done():
            dropped = [r.reason for r in future.result().values() if isinstance(r, Dropped)]
            if dropped:
                return 503, {"error": f"not queued: {dropped[0]}"}
        return 202, answer

    def close(self) -> None:
        """Shut down the client if the app made it (bounded by its shutdown timeout)."""
        if self._owns_client:
            self.client.shutdown()


def _drain(stream: Any, length: int, limit: int = 8 * MAX_BODY) -> None:
    """Read and discard a refused body (up to ``limit``), so the client sees the 413 rather than
    a connection reset while it is still sending."""
    left = min(length, limit)
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON, and PagerDuty would refuse the event carrying them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    """A JSON number as a float; ``1e999`` (infinite in Python) is refused like ``Infinity``."""
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _field_of(message: str) -> str | None:
    """The field a msgspec validation message names (``missing required field `apiKey```,
    ``... - at `$.logLevel```)."""
    for marker in ("field `", "at `$."):
        if marker in message:
            name = re.split(r"[`\[.]", message.split(marker, 1)[1], maxsplit=1)[0]
            return name or None
    return None


def create_app(
    backends: Sequence[str | Backend] | None = None,
    *,
    token: str,
    client: Client | None = None,
    **client_options: Any,
) -> BridgeApp:
    """The bridge as a WSGI application.

    Args:
        backends: backend URLs or objects for the app's own client (e.g. ``["pagerduty://KEY"]``).
        token: the shared secret every request must carry.
        client: an existing client to send through instead (then give no backends).
        **client_options: more :class:`~alertkit.Client` options for the app's own client.

    Raises:
        ConfigError: an empty token, both ``client`` and ``backends``, or a bad backend URL.
    """
    if not isinstance(token, str) or not token:
        raise ConfigError("bridge: token is required (a non-empty string)")
    if client is not None:
        if backends is not None or client_options:
            raise ConfigError("bridge: give either client= or backends/client options, not both")
        return BridgeApp(client, token, owns_client=False)
    if not backends:
        raise ConfigError("bridge: at least one backend URL is required (e.g. pagerduty://KEY)")
    client_options.setdefault("sample_system", False)
    made = Client(backends=list(backends), **client_options)
    return BridgeApp(made, token, owns_client=True)


def make_bridge_server(
    listen: str,
    app: BridgeApp,
    *,
    threads: int = 8,
    max_connections: int = 500,
    timeout: float = 10.0,
) -> BridgeServer:
    """A hardened waitress server for ``app`` bound to ``HOST:PORT`` (port 0: any free port).

    Args:
        listen: ``HOST:PORT``; ``[::1]:8080`` for IPv6.
        threads: worker threads running the app (only complete requests reach them).
        max_connections: connections open at once; more wait in the listen backlog.
        timeout: seconds a client may take to send one whole request, and that an idle
            keep-alive connection stays open.

    Raises:
        ConfigError: ``listen`` is not ``HOST:PORT``, the address cannot be bound (in use, no
            permission), a limit is not positive, or waitress (``alertkit[bridge]``) is missing.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"bridge: --listen must be HOST:PORT, got {listen!r}")
    for name, value in (("threads", threads), ("max_connections", max_connections)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"bridge: {name} must be a positive whole number, got {value!r}")
    if not timeout > 0:
        raise ConfigError(f"bridge: timeout must be positive, got {timeout!r}")
    return _server_class()(
        app,
        host.strip("[]") or "127.0.0.1",
        int(port_text),
        threads=threads,
        connection_limit=max_connections,
        timeout=timeout,
        max_header_bytes=MAX_HEADER_BYTES,
        max_body_bytes=MAX_BODY,
        routes=ROUTES,
    )


def _server_class() -> type[BridgeServer]:
    """:class:`alertkit.servers.bridge_server.BridgeServer`, or one clear error naming the extra."""
    try:
        from alertkit.servers.bridge_server import BridgeServer
    except ImportError as exc:
        raise ConfigError(
            f"bridge: the server needs the {exc.name or 'waitress'!r} package: "
            "pip install 'alertkit[bridge]'"
        ) from None
    return BridgeServer


def serve(
    listen: str,
    token: str,
    backend_urls: Sequence[str],
    ready: Callable[[BridgeServer], None] | None = None,
    **server_options: Any,
) -> None:
    """Run the bridge until interrupted (Ctrl-C or SIGTERM), then flush the pipeline.

    ``ready``, if given, is called with the server once it listens (tests stop it from there);
    ``server_options`` are :func:`make_bridge_server`'s ``threads``, ``max_connections`` and
    ``timeout``.

    Raises:
        ConfigError: as :func:`create_app` and :func:`make_bridge_server`, before serving.
    """
    _server_class()  # a missing extra is reported before a client is made
    app = create_app(backend_urls, token=token)
    try:
        server = make_bridge_server(listen, app, **server_options)
    except BaseException:
        app.close()
        raise
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address
    log.info("alertkit bridge listening on %s:%s", host, port)
    if ready is not None:
        ready(server)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how an operator stops it
            server.serve_forever()
    finally:
        server.server_close()
        app.close()
