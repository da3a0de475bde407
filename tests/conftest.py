"""Fixtures every test gets: an isolated ALERTKIT_HOME, and swallowed internal errors failing the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alertkit.guard import add_internal_error_hook


@pytest.fixture(autouse=True)
def alertkit_home(tmp_path, monkeypatch) -> Iterator[object]:
    """Each test has its own ALERTKIT_HOME and no backend configuration from the environment."""
    home = tmp_path / "alertkit-home"
    monkeypatch.setenv("ALERTKIT_HOME", str(home))
    for name in (
        "ALERTKIT_BACKENDS",
        "ALERTKIT_API_KEY",
        "REDIS_HOST",
        "REDIS_PORT",
        "CHOUETTE_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture(autouse=True)
def internal_errors(request) -> Iterator[list[BaseException]]:
    """An error swallowed by alertkit's guard fails the test, unless the test expects it
    (mark it with ``@pytest.mark.allow_internal_errors``)."""
    errors: list[BaseException] = []
    remove = add_internal_error_hook(errors.append)
    yield errors
    remove()
    if errors and not request.node.get_closest_marker("allow_internal_errors"):
        pytest.fail(f"alertkit swallowed internal errors: {errors!r}")
