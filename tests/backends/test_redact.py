"""How a configuration error shows a URL: where the mistake is, never the credential."""

from __future__ import annotations

import pytest

from alertkit.backends._redact import masked_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:notaport/0", "'redis://****@127.0.0.1:****/0'"),
        ("redis://h:6379/abc", "'redis://h:6379/abc'"),  # nothing secret: shown as written
        ("redis://[::1]:6379/0", "'redis://[::1]:6379/0'"),
        ("redis://user:pw/0", "'redis://user:****/0'"),  # the "@" is missing
        ("redis://:p/w@host:6379/0", "'redis://****@host:6379/0'"),  # a "/" in the password
        ("smtp://a%40b.com:pw@mail:587?to=x@y.com", "'smtp://****@mail:587?to=****'"),
        ("http://h/v1?api_key=k&timeout=2", "'http://h/v1?api_key=****&timeout=****'"),
        ("whatsapp://token@1234/%2B1555", "'whatsapp://****@1234/%2B1555'"),
        ("xoxb-not-a-url", "'****' (14 characters)"),
    ],
)
def test_credentials_are_masked_and_the_rest_is_shown(url, shown):
    assert masked_url(url) == shown


def test_a_path_that_holds_the_secret_can_be_masked_and_a_non_string_is_named():
    assert masked_url("slack://hooks.slack.com/services/T/B/x", keep_path=False) == (
        "'slack://hooks.slack.com/****'"
    )
    assert masked_url(None) == "a NoneType"
