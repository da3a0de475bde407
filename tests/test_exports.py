"""The public surface is exactly ``alertkit.__all__``, sorted, and every name in it exists."""

from __future__ import annotations

import alertkit


def test_all_is_sorted_and_complete() -> None:
    assert list(alertkit.__all__) == sorted(alertkit.__all__)
    for name in alertkit.__all__:
        assert hasattr(alertkit, name), name


def test_documented_entry_points_are_exported() -> None:
    for name in (
        "Client",
        "AlertHandler",
        "AppEvent",
        "CustomData",
        "CustomStringData",
        "CustomDoubleData",
        "init",
        "get_logger",
    ):
        assert name in alertkit.__all__


def test_backends_package_resolves_its_lazy_names() -> None:
    from alertkit import backends

    for name in backends.__all__:
        assert getattr(backends, name) is not None


def test_exported_exceptions_are_the_documented_tree() -> None:
    """Only exceptions alertkit really raises are public: no DeliveryError (delivery failures are
    outcomes, never exceptions), every one rooted at AlertkitError."""
    exported = {
        name
        for name in alertkit.__all__
        if isinstance(getattr(alertkit, name), type)
        and issubclass(getattr(alertkit, name), BaseException)
    }
    assert exported == {"AlertkitError", "ConfigError", "MissingDependency"}
    assert issubclass(alertkit.MissingDependency, alertkit.ConfigError)
    assert issubclass(alertkit.ConfigError, alertkit.AlertkitError)
    assert not hasattr(alertkit, "DeliveryError")
