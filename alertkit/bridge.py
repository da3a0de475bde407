"""The bridge: monitoring webhooks (Guance first) into PagerDuty through the alertkit pipeline.

``create_app`` returns a plain WSGI application, so it runs under gunicorn or any WSGI server;
``serve`` runs it with the standard library's threaded server (``alertkit bridge``). Routes:

* ``POST /guance``: a Guance webhook body, mapped by :mod:`alertkit.guance` to a trigger or a
  resolve sharing one dedup key.
* ``POST /events``: an AppEvent JSON (WIRE.md section 1), delivered like ``send_event_async``.

The token travels as ``Authorization: Bearer <token>`` or ``?token=<token>`` (Guance can only put
it in the URL). Answers: 202 once the event is queued (never waiting on the destination), 401
without the token, 400 with ``{"error": ..., "field": ...}`` for a bad body, 413 over 1 MB,
404/405 for other paths and methods.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec

from alertkit.backends.base import Backend
from alertkit.client import Client
from alertkit.errors import ConfigError
from alertkit.guance import BadRequestError, read_guance
from alertkit.models import AppEvent, decode_event
from alertkit.outcomes import Dropped
from alertkit.pipeline import Results

log = logging.getLogger("alertkit.bridge")

MAX_BODY = 1024 * 1024
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
            return 404, {"error": f"no route {path}; POST /guance or /events"}
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
            data = json.loads(raw) if raw else None
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
        except msgspec.ValidationError as exc:
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


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def make_bridge_server(listen: str, app: BridgeApp) -> WSGIServer:
    """A threaded stdlib WSGI server for ``app`` bound to ``HOST:PORT`` (port 0: any free port).

    Raises:
        ConfigError: ``listen`` is not ``HOST:PORT``.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"bridge: --listen must be HOST:PORT, got {listen!r}")
    return make_server(
        host.strip("[]") or "127.0.0.1",
        int(port_text),
        app,
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )


def serve(
    listen: str,
    token: str,
    backend_urls: Sequence[str],
    ready: Callable[[WSGIServer], None] | None = None,
) -> None:
    """Run the bridge until interrupted (Ctrl-C or SIGTERM), then flush the pipeline.

    ``ready``, if given, is called with the server once it listens (tests stop it from there).
    """
    app = create_app(backend_urls, token=token)
    server = make_bridge_server(listen, app)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    log.info("alertkit bridge listening on %s:%s", host, port)
    if ready is not None:
        ready(server)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how an operator stops it
            server.serve_forever()
    finally:
        server.server_close()
        app.close()


def add_bridge_command(subparsers: Any) -> None:
    """Add ``alertkit bridge --listen HOST:PORT --token SECRET BACKEND_URL...`` to the CLI."""
    parser = subparsers.add_parser(
        "bridge", help="receive monitoring webhooks (Guance) and send them to PagerDuty"
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("ALERTKIT_BRIDGE_TOKEN"),
        help="shared secret requests must carry; default $ALERTKIT_BRIDGE_TOKEN",
    )
    parser.add_argument(
        "backend", nargs="+", metavar="URL", help="backend URL(s), e.g. pagerduty://ROUTING_KEY"
    )
    parser.set_defaults(func=run_bridge)


def run_bridge(args: argparse.Namespace) -> int:
    """The ``bridge`` subcommand: serve until interrupted; 0 on a clean stop."""
    if not args.token:
        raise ConfigError("bridge: --token (or $ALERTKIT_BRIDGE_TOKEN) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.listen, args.token, args.backend)
    return 0
