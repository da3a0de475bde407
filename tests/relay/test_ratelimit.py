"""Fleet-wide rate limits against a real redis-server: one token bucket per destination key shared
by every relay; defaults per service; ``?rate=`` on a backend URL overrides; Redis down gives
the token (fails open)."""

from __future__ import annotations

import threading
import time

import pytest

from alertkit.backends import create_backend
from alertkit.model.errors import ConfigError
from alertkit.relay.ratelimit import SharedRateLimit, destination
from tests.standins.redis import RedisServer, quick_client

STREAM = "alertkit:events"
PD_KEY = "0123456789abcdef0123456789abcdef"


def test_two_relays_share_one_bucket_per_destination(redis_server: RedisServer) -> None:
    limits = [SharedRateLimit(redis_server.client(), STREAM) for _ in range(2)]
    taken = [0, 0]
    start = time.monotonic()

    def relay(index: int) -> None:
        while time.monotonic() - start < 1.0:
            if limits[index].take("pagerduty:key-a", rate=10) == 0.0:
                taken[index] += 1

    threads = [threading.Thread(target=relay, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - start
    assert all(taken), "both relays got tokens"
    assert sum(taken) <= 1 + 10 * elapsed + 1, "together no more than the one bucket allows"
    assert sum(taken) >= 5
    assert limits[0].take("pagerduty:key-b", rate=10) == 0.0, "another key has its own bucket"


def test_no_token_answers_the_wait(redis_server: RedisServer) -> None:
    limit = SharedRateLimit(redis_server.client(), STREAM)
    assert limit.take("slack:hook", rate=0.5, burst=2) == 0.0
    assert limit.take("slack:hook", rate=0.5, burst=2) == 0.0
    wait = limit.take("slack:hook", rate=0.5, burst=2)
    assert 1.5 < wait <= 2.0, "one token per 2 s: about 2 s to wait"
    assert limit.stats() == {"taken": 2, "waits": 1, "failed_open": 0}
    with pytest.raises(ValueError, match="positive"):
        limit.take("slack:hook", rate=0)


def test_redis_keys_never_hold_the_destination_secret(redis_server: RedisServer) -> None:
    limit = SharedRateLimit(redis_server.client(), STREAM)
    backend = create_backend(f"pagerduty://{PD_KEY}")
    assert limit.take_for(backend) == 0.0
    with redis_server.client() as conn:
        keys = [k.decode() for k in conn.keys("*")]
    assert len(keys) == 1 and keys[0].startswith("{alertkit:events}:rate:")
    assert PD_KEY not in keys[0]


def test_redis_down_gives_the_token(redis_server_own: RedisServer) -> None:
    limit = SharedRateLimit(quick_client(redis_server_own.port), STREAM)
    redis_server_own.stop()
    assert limit.take("slack:hook", rate=1) == 0.0
    assert limit.take("slack:hook", rate=1) == 0.0, "at once, without asking Redis again"
    assert limit.stats()["failed_open"] == 2


@pytest.mark.parametrize(
    ("url", "limit"),
    [
        (f"pagerduty://{PD_KEY}", (120, 60.0)),
        ("slack://T000/B000/XXXX", (1, 1.0)),
        ("tgram://123:abc/12345", (1, 1.0)),
        ("tgram://123:abc/-10012345", (20, 60.0)),
        ("whatsapp://token@1234567/+15551234567", (1, 6.0)),
        (f"pagerduty://{PD_KEY}?rate=20/s", (20, 1.0)),
        ("slack://T000/B000/XXXX?rate=30/min", (30, 60.0)),
        ("tgram://123:abc/12345?rate=0.5/s", (1, 2.0)),
        ("whatsapp://token@1234567/+15551234567?rate=10/minute", (10, 60.0)),
    ],
)
def test_limits_per_destination_default_to_the_services_and_rate_overrides(
    url: str, limit: tuple[int, float]
) -> None:
    backend = create_backend(url)
    found = destination(backend)
    assert found is not None and found[1] == limit
    if "rate=" in url:
        assert backend.rate_limit == limit, "the relay's own pacing follows the URL too"


def test_destination_keys_tell_targets_apart() -> None:
    one = destination(create_backend("slack://T000/B000/XXXX"))
    two = destination(create_backend("slack://T000/B000/YYYY"))
    assert one and two and one[0] != two[0]
    assert destination(create_backend("http://127.0.0.1:9/hook")) is None, "no limit: no bucket"
    paced = destination(create_backend("http://127.0.0.1:9/hook?rate=5/s"))
    assert paced is not None and paced[1] == (5, 1.0)


@pytest.mark.parametrize("rate", ["fast", "20", "20/fortnight", "0/s", "-1/s", "inf/s"])
def test_a_bad_rate_is_refused_naming_the_option(rate: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        create_backend(f"slack://T000/B000/XXXX?rate={rate}")
