"""The contract catches what it promises to catch: a backend that breaks it fails its tests."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from alertkit.backends.base import Backend, BaseBackend
from alertkit.model.event import Envelope
from alertkit.model.outcomes import Delivered, Outcome, RetryLater
from alertkit.testing.contract import HttpBackendContract
from alertkit.testing.stand_in import Reply, ScriptedServer

TOKEN = "leakyTokenValue123"


class _Careless(BaseBackend):
    """Shows its token, retries everything, and never looks at the status."""

    scheme = "careless"

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.token = TOKEN

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        import urllib.error
        import urllib.request

        outcomes: list[Outcome] = []
        for _ in batch:
            try:
                urllib.request.urlopen(f"{self.endpoint}/t/{self.token}", b"{}", timeout=1)
                outcomes.append(Delivered())
            except (OSError, urllib.error.HTTPError) as exc:
                outcomes.append(RetryLater(f"failed: {exc} for token {self.token}"))
        return outcomes

    def describe(self) -> str:
        return f"careless://{self.token}"


class _CarelessContract(HttpBackendContract):
    secrets = (TOKEN,)

    def make(self, endpoint: str, timeout: float) -> Backend:
        return _Careless(endpoint)


def test_a_leaked_secret_fails_the_masking_test() -> None:
    with pytest.raises(AssertionError, match="secret"):
        _CarelessContract().test_secrets_are_masked_in_repr_reasons_and_logs()


def test_a_permanent_error_retried_fails_the_status_test() -> None:
    with pytest.raises(AssertionError, match="HTTP 400"):
        _CarelessContract().test_every_status_gives_its_outcome(400)


def test_a_retry_after_ignored_fails_the_status_test() -> None:
    with pytest.raises(AssertionError):
        _CarelessContract().test_every_status_gives_its_outcome(429)


def test_the_stand_in_scripts_a_hang_that_ends_when_it_stops() -> None:
    import urllib.request

    with ScriptedServer([Reply(hang=True)]) as server, pytest.raises(OSError):
        urllib.request.urlopen(server.url, b"{}", timeout=0.3)
