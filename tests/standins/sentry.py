"""A local Sentry ingest stand-in: parses every envelope with sentry-sdk's own parser.

Each POST must go to ``/api/<project>/envelope/`` with an ``X-Sentry-Auth`` header naming the
project's public key and ``sentry_version=7``; the body is read by
``sentry_sdk.envelope.Envelope.deserialize`` (never by a parser written here), and must hold one
``event`` item whose ``event_id`` matches the envelope header's. A request that breaks a rule is
answered 400 and recorded in ``invalid``. Like Sentry, an ``event_id`` seen before is accepted and
not stored again (``duplicates`` counts them). Otherwise the next scripted reply is given (default:
200 with ``{"id": event_id}``).
"""

from __future__ import annotations

import threading
from typing import Any

from sentry_sdk.envelope import Envelope as SentryEnvelope

from tests.standins.http import Reply, Request, ScriptedServer

PUBLIC_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
PROJECT_ID = "42"


class SentryStandIn:
    """``with SentryStandIn() as sentry:``; ``sentry.dsn`` for the backend, ``sentry.events``."""

    def __init__(self, *replies: Reply, key: str = PUBLIC_KEY, project: str = PROJECT_ID) -> None:
        self.key = key
        self.project = project
        self.replies = list(replies)
        self.events: list[dict[str, Any]] = []
        self.envelopes: list[SentryEnvelope] = []
        self.auth: list[dict[str, str]] = []
        self.invalid: list[tuple[str, str]] = []
        self.duplicates = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.server = ScriptedServer(self._answer)
        self.dsn = f"{self.server.url.replace('://', f'://{key}@')}/{project}"

    def url(self, scheme: str = "sentry+http", **options: str) -> str:
        """A ``sentry+http://`` URL of this stand-in's project."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        host = self.server.url.partition("://")[2]
        return f"{scheme}://{self.key}@{host}/{self.project}" + (f"?{query}" if query else "")

    def _reject(self, request: Request, why: str) -> Reply:
        with self._lock:
            self.invalid.append((request.path, why))
        return Reply(400, {"detail": why})

    def _answer(self, request: Request) -> Reply:
        if request.path != f"/api/{self.project}/envelope/":
            return self._reject(request, f"wrong path {request.path}")
        if request.headers.get("content-type") != "application/x-sentry-envelope":
            return self._reject(request, "wrong content type")
        auth_header = request.headers.get("x-sentry-auth", "")
        scheme, _, pairs = auth_header.partition(" ")
        auth = dict(p.strip().partition("=")[::2] for p in pairs.split(",") if "=" in p)
        if scheme != "Sentry" or auth.get("sentry_key") != self.key:
            return self._reject(request, "missing or wrong X-Sentry-Auth")
        if auth.get("sentry_version") != "7":
            return self._reject(request, "sentry_version must be 7")
        try:
            envelope = SentryEnvelope.deserialize(request.body)
        except Exception as exc:  # whatever the parser says is the client's fault
            return self._reject(request, f"unparseable envelope: {exc!r}")
        items = [item for item in envelope.items if item.type == "event"]
        if len(items) != 1 or items[0].payload.json is None:
            return self._reject(request, "an envelope must hold exactly one event item")
        event = items[0].payload.json
        event_id = envelope.headers.get("event_id")
        if not event_id or event.get("event_id") != event_id or len(event_id) != 32:
            return self._reject(request, "event_id missing, not 32 hex digits or not matching")
        with self._lock:
            self.auth.append(auth)
            self.envelopes.append(envelope)
            if event_id in self._seen:
                self.duplicates += 1
            else:
                reply = self.replies.pop(0) if self.replies else Reply(200, {"id": event_id})
                if 200 <= reply.status < 300:
                    self._seen.add(event_id)
                    self.events.append(event)
                return reply
        return Reply(200, {"id": event_id})

    def __enter__(self) -> SentryStandIn:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
