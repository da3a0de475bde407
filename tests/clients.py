"""Clients made by a test and shut down after it: one factory for every test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from alertkit import Client


@contextmanager
def clients_for_test(shutdown: float = 2.0, **defaults: Any) -> Iterator[Callable[..., Client]]:
    """``make(*backends, **options)`` builds a client (no sampler, no atexit, ``defaults`` unless
    given); every client made is shut down, within ``shutdown`` seconds, when the block ends."""
    made: list[Client] = []

    def make(*backends: Any, **options: Any) -> Client:
        for key, value in defaults.items():
            options.setdefault(key, value)
        client = Client(
            backends=list(backends), sample_system=False, register_atexit=False, **options
        )
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.shutdown(shutdown)
