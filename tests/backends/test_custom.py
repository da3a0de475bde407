"""The custom-notifier guide (docs/backends/custom.md): its example runs and behaves as it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alertkit import Delivered, Rejected, RetryLater
from alertkit.backends import create_backend, registry
from alertkit.testing.contract import HttpBackendContract
from tests.backends._notifiers import client_factory, declined
from tests.standins.http import Reply, ScriptedServer

GUIDE = Path(__file__).parents[2] / "docs" / "backends" / "custom.md"
TOKEN = "s3cretWebhookToken"


@pytest.fixture
def guide(monkeypatch, capsys):
    """Run every Python block of the guide in one namespace, with a registry of its own."""
    monkeypatch.setattr(registry, "_CUSTOM", {})
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    namespace: dict = {"__name__": "custom_guide"}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)
    namespace["printed"] = capsys.readouterr().out
    return namespace


def test_the_guides_client_builds_and_masks_the_token(guide):
    assert guide["printed"].strip() == "<DiscordBackend name='discord' discord://123456789012/****>"
    discord, slack = guide["client"].backends
    assert type(discord).__name__ == "DiscordBackend"
    assert (discord.min_level, slack.min_level) == (40, 30)


def test_the_guides_backend_against_a_discord_stand_in(guide):
    with ScriptedServer(
        [
            Reply(204, b""),
            Reply(
                429,
                {"message": "You are being rate limited.", "retry_after": 1.5},
                {"Retry-After": "2"},
            ),
            Reply(400, {"message": f"Invalid Webhook Token {TOKEN}", "code": 50027}),
            Reply(503, "upstream connect error"),
        ]
    ) as discord:
        backend = create_backend(f"discord://123456789012/{TOKEN}?endpoint={discord.url}")
        assert type(backend) is guide["DiscordBackend"]
        with client_factory() as make:
            envelope = declined(make([backend]))
        outcomes = [backend.send([envelope])[0] for _ in range(4)]
        request = discord.requests[0]
    assert request.path == f"/api/webhooks/123456789012/{TOKEN}"
    assert request.json()["content"].startswith("**[ERROR] tests.backends._notifiers.Payment")
    assert outcomes[0] == Delivered({"status": 204})
    assert isinstance(outcomes[1], RetryLater) and outcomes[1].delay == 2.0
    assert isinstance(outcomes[2], Rejected) and "Invalid Webhook Token ****" in outcomes[2].reason
    assert isinstance(outcomes[3], RetryLater) and outcomes[3].delay is None
    assert all(TOKEN not in getattr(o, "reason", "") for o in outcomes)
    assert TOKEN not in repr(backend)


class TestTheGuidesBackendKeepsTheContract(HttpBackendContract):
    """The guide's Discord backend passes the same contract suite as the built-in backends."""

    secrets = (TOKEN,)
    ok_status = 204
    ok_body = b""

    @pytest.fixture(autouse=True)
    def _discord(self, guide):
        self.discord = guide["DiscordBackend"]

    def make(self, endpoint: str, timeout: float):
        return self.discord("123456789012", TOKEN, endpoint=endpoint, timeout=timeout)

    def url(self, endpoint: str, timeout: float) -> str:
        return f"discord://123456789012/{TOKEN}?endpoint={endpoint}"

    def bad_configs(self):
        yield (lambda: self.discord("not-digits", TOKEN), "webhook_id")
