"""The user docs name everything a user can set: options, URL forms and options, environment
variables, CLI commands. Introspected from the code, so a new option without docs fails here."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest

from alertkit import AlertHandler, Client
from alertkit.backends.registry import backend_class, known_schemes
from alertkit.cli import build_parser
from alertkit.model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
ALL_DOCS = "\n".join(path.read_text() for path in sorted(DOCS.rglob("*.md")))


def keyword_options(target: object) -> list[str]:
    """The named parameters of a class's constructor (not ``self``, not ``**kwargs``)."""
    return [
        name
        for name, parameter in inspect.signature(target).parameters.items()  # type: ignore[arg-type]
        if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    ]


def url_options(scheme: str) -> list[str]:
    """The query options a backend URL accepts, as the backend itself lists them when refusing an
    unknown one (``name`` and ``min_level`` are every backend's)."""
    with pytest.raises(ConfigError, match="unknown URL option") as refused:
        backend_class(scheme).from_url(f"{scheme}://host/path?not_an_option=1")
    known = str(refused.value).rpartition("known: ")[2]
    return sorted({*known.split(", "), "name", "min_level"})


def environment_variables() -> set[str]:
    """Every variable the code reads: ``os.environ.get("X")``, ``os.environ["X"]``, ``os.getenv``."""
    pattern = re.compile(
        r"""os\.(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]*)["']"""
    )
    return {
        name
        for path in (ROOT / "alertkit").rglob("*.py")
        for name in pattern.findall(path.read_text())
    }


def cli_commands() -> list[str]:
    """``demo``, ``events``, ``spool list`` ...: every (sub)command of ``alertkit``."""

    def walk(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append(f"{prefix}{name}")
                    found += walk(sub, f"{prefix}{name} ")
        return found

    return walk(build_parser(), "")


@pytest.mark.parametrize("option", keyword_options(Client))
def test_every_client_option_is_in_the_configuration_page(option: str) -> None:
    assert f"`{option}`" in CONFIGURATION


@pytest.mark.parametrize("option", keyword_options(AlertHandler))
def test_every_alert_handler_option_is_in_the_configuration_page(option: str) -> None:
    assert f"`{option}`" in CONFIGURATION


@pytest.mark.parametrize("scheme", known_schemes())
def test_every_url_scheme_is_in_the_configuration_page(scheme: str) -> None:
    assert f"`{scheme}://" in CONFIGURATION


@pytest.mark.parametrize(
    ("scheme", "option"),
    [(scheme, option) for scheme in known_schemes() for option in url_options(scheme)],
)
def test_every_url_option_is_documented(scheme: str, option: str) -> None:
    """Named as a query option (``?option=`` or ``&option=``) or in a table (`` `option` ``)."""
    written = re.compile(rf"[?&`]{re.escape(option)}[=`]")
    assert written.search(ALL_DOCS), f"{scheme}:// takes ?{option}= but the docs never name it"


@pytest.mark.parametrize("variable", sorted(environment_variables()))
def test_every_environment_variable_is_in_the_configuration_page(variable: str) -> None:
    assert f"`{variable}`" in CONFIGURATION


def test_the_environment_scan_finds_the_known_variables() -> None:
    assert {
        "ALERTKIT_HOME",
        "ALERTKIT_BACKENDS",
        "ALERTKIT_BRIDGE_TOKEN",
    } <= environment_variables()


@pytest.mark.parametrize("command", cli_commands())
def test_every_cli_command_is_documented(command: str) -> None:
    assert f"alertkit {command}" in ALL_DOCS or f"`{command.rpartition(' ')[2]}`" in ALL_DOCS


def cli_flags() -> list[tuple[str, str]]:
    """``(command, --flag)`` for every long option of every (sub)command."""

    def walk(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, str]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += walk(sub, f"{prefix}{name} ")
            else:
                found += [(prefix.strip(), flag) for flag in action.option_strings]
        return [item for item in found if item[1].startswith("--")]

    return walk(build_parser(), "")


@pytest.mark.parametrize(("command", "flag"), cli_flags())
def test_every_cli_option_is_documented(command: str, flag: str) -> None:
    assert re.search(rf"{re.escape(flag)}\b", ALL_DOCS), f"alertkit {command} {flag}"
