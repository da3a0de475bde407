"""The one URL-option reader (alertkit/backends/_options.py): every backend reads numbers and
yes/no flags the same way, and a wrong value fails at construction naming the option."""

from __future__ import annotations

import pytest

from alertkit.backends._options import read_options
from alertkit.backends.registry import create_backend
from alertkit.model.errors import ConfigError

KEY = "R0UT1NGK3Y0123456789abcdefABCDEF"
#: One URL per backend that takes a timeout in its query, and the name of that option.
URLS = {
    "http": ("http://127.0.0.1:9/v1/events?api_key=k", "timeout"),
    "pagerduty": (f"pagerduty://{KEY}", "timeout"),
    "slack": ("slack://hooks.slack.com/services/T0/B0/XXXX", "timeout"),
    "tgram": ("tgram://123:ABC/42", "timeout"),
    "whatsapp": ("whatsapp://tok@123/15551234567", "timeout"),
    "smtp": ("smtp://127.0.0.1:25?to=a@example.com&from=b@example.com", "timeout"),
    "redis": ("redis://127.0.0.1:6379/0", "socket_timeout"),
}


@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [
        ("on", True),
        ("YES", True),
        ("1", True),
        ("", True),
        ("off", False),
        ("No", False),
        ("false", False),
        ("0", False),
    ],
)
def test_a_flag_means_the_same_in_every_spelling(spelling: str, meaning: bool) -> None:
    assert read_options("x", {"verify": spelling}, flag=("verify",)) == {"verify": meaning}


@pytest.mark.parametrize("scheme", sorted(URLS))
def test_every_backend_reads_verify_off_as_off(scheme: str) -> None:
    url, _ = URLS[scheme]
    backend = create_backend(url + ("&" if "?" in url else "?") + "verify=off")
    try:
        assert backend.verify is False  # type: ignore[attr-defined]
    finally:
        backend.close()


@pytest.mark.parametrize("scheme", sorted(URLS))
def test_a_timeout_that_is_no_number_names_the_option(scheme: str) -> None:
    url, option = URLS[scheme]
    with pytest.raises(ConfigError, match=f"{option} must be a number"):
        create_backend(url + ("&" if "?" in url else "?") + f"{option}=soon")


@pytest.mark.parametrize("scheme", sorted(URLS))
def test_a_flag_that_is_neither_yes_nor_no_is_refused(scheme: str) -> None:
    url, _ = URLS[scheme]
    with pytest.raises(ConfigError, match="verify must be yes or no"):
        create_backend(url + ("&" if "?" in url else "?") + "verify=maybe")


def test_a_secret_options_value_is_never_quoted() -> None:
    with pytest.raises(ConfigError) as caught:
        read_options("x", {"pin": "s3cret"}, count=("pin",), secret=("pin",))
    assert "pin must be a whole number" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_an_unknown_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown URL option.*tiemout.*known: timeout"):
        read_options("x", {"tiemout": "2"}, number=("timeout",))
