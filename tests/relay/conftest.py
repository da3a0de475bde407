"""Fixtures of the relay tests: a real redis-server, and envelopes as relays read them."""

from __future__ import annotations

from tests.standins.redis import redis_server, redis_server_own, redis_server_session

__all__ = ["redis_server", "redis_server_own", "redis_server_session"]
