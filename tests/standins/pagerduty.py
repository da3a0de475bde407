"""A local PagerDuty Events API stand-in: validates every body, then answers as scripted.

Each body is checked against PagerDuty's own OpenAPI schema (``tests/schemas/``, kept in the
repository; tests skip when it is missing, which CI counts as a failure) and the documented limits:
summary at most 1024 characters, dedup key at most 255, body at most 512 KB, ISO 8601 timestamps,
https image sources.
An invalid body is answered like PagerDuty (400) and recorded in ``invalid``; a valid one gets the
next scripted reply (default: 202 with the dedup key echoed, as PagerDuty does).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.standins.http import Reply, Request, ScriptedServer

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "pagerduty-events-v2.openapi.json"
KEY = "0123456789abcdef0123456789abcdef"
MAX_BODY = 512 * 1024


def _validators() -> dict[str, Any]:
    if not SCHEMA_PATH.is_file():
        pytest.skip(f"PagerDuty's Events v2 OpenAPI file is not at {SCHEMA_PATH}")
    from jsonschema import Draft202012Validator

    spec = json.loads(SCHEMA_PATH.read_text())
    validators = {}
    for path, name in (("/enqueue", "enqueue"), ("/change/enqueue", "change")):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        validators[name] = Draft202012Validator(
            {**schema["schema"], "components": spec["components"]}
        )
    return validators


def limit_errors(body: dict[str, Any], size: int) -> list[str]:
    """What in ``body`` breaks PagerDuty's documented limits (beyond the schema)."""
    errors = []
    if size > MAX_BODY:
        errors.append(f"body is {size} bytes, over 512 KB")
    payload = body.get("payload") or {}
    if len(payload.get("summary", "")) > 1024:
        errors.append("summary over 1024 characters")
    if len(body.get("dedup_key", "")) > 255:
        errors.append("dedup_key over 255 characters")
    if len(body.get("routing_key", "")) != 32:
        errors.append("routing_key is not 32 characters")
    if body.get("event_action") in ("acknowledge", "resolve") and not body.get("dedup_key"):
        errors.append("dedup_key is required for acknowledge/resolve")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(payload["timestamp"])
        except ValueError:
            errors.append(f"timestamp {payload['timestamp']!r} is not ISO 8601")
    for image in body.get("images", []):
        if not str(image.get("src", "")).startswith("https://"):
            errors.append(f"image src {image.get('src')!r} is not https")
    return errors


class PagerDutyStandIn:
    """``with PagerDutyStandIn() as pd:``; ``pd.endpoint`` for the backend, ``pd.bodies``."""

    def __init__(self, *replies: Reply) -> None:
        self.validators = _validators()
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.invalid: list[tuple[dict[str, Any] | None, list[str]]] = []
        self._lock = threading.Lock()
        self.server = ScriptedServer(self._answer)
        # Poll for shutdown every 50 ms instead of socketserver's 500 ms: faster teardown.
        self.server._thread = threading.Thread(
            target=self.server._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.endpoint = f"{self.server.url}/v2/enqueue"

    def url(self, key: str = KEY, **options: str) -> str:
        """A ``pagerduty://`` URL pointed at this stand-in."""
        query = "&".join(f"{k}={v}" for k, v in {"endpoint": self.endpoint, **options}.items())
        return f"pagerduty://{key}?{query}"

    def _answer(self, request: Request) -> Reply:
        try:
            body = json.loads(request.body)
        except ValueError:
            self.invalid.append((None, ["not JSON"]))
            return Reply(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["JSON parse error"],
                },
            )
        kind = "change" if request.path.endswith("/change/enqueue") else "enqueue"
        errors = [e.message for e in self.validators[kind].iter_errors(body)]
        errors += limit_errors(body, len(request.body))
        with self._lock:
            self.bodies.append(body)
            self.paths.append(request.path)
            if errors:
                self.invalid.append((body, errors))
                return Reply(
                    400,
                    {
                        "status": "invalid event",
                        "message": "Event object is invalid",
                        "errors": errors,
                    },
                )
            reply = self.replies.pop(0) if self.replies else Reply(202)
        if reply.status == 202 and reply.body == b"{}":
            dedup = body.get("dedup_key") or uuid.uuid4().hex
            body_out: dict[str, Any] = {"status": "success", "message": "Event processed"}
            if kind == "enqueue":
                body_out["dedup_key"] = dedup
            return Reply(202, body_out, reply.headers)
        return reply

    def __enter__(self) -> PagerDutyStandIn:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
