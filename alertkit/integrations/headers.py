"""Request headers for events: read only when an event shows them, secret ones masked."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from alertkit.guard import capture_internal_exceptions
from alertkit.model.stacktrace import safe_str
from alertkit.policy.scrub import MASK

__all__ = ["SECRET_HEADERS", "RequestHeaders", "environ_headers"]

#: Headers whose values never leave the process, whatever the client's scrubbing options (the
#: pipeline's scrubber masks other secret-looking names and values too).
SECRET_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrftoken",
        "x-csrf-token",
        "x-xsrf-token",
    }
)


class RequestHeaders(Mapping[str, str]):
    """The request's headers, read only when an event shows them (most requests send none).

    ``source(request)`` yields ``(name, value)`` pairs; names are shown lower-case and the values
    of :data:`SECRET_HEADERS` are masked.
    """

    def __init__(self, source: Callable[[Any], Iterable[tuple[str, str]]], request: Any) -> None:
        self._source = source
        self._request = request
        self._headers: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        headers = self._headers
        if headers is None:
            headers = {}
            with capture_internal_exceptions():
                for name, value in self._source(self._request):
                    key = name.lower()
                    headers[key] = MASK if key in SECRET_HEADERS else value
            self._headers = headers
        return headers

    def __getitem__(self, name: str) -> str:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"RequestHeaders({self._load()!r})"


def environ_headers(environ: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The headers of a WSGI environ (also Django's ``request.META``)."""
    for key, value in list(environ.items()):
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-"), safe_str(value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            yield key.replace("_", "-"), safe_str(value)
