"""The command line: demo through the real pipeline, the inbox listing, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alertkit.cli import main


def run(*args: str, env_home=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_delivers_to_the_local_inbox_and_events_lists_them(capsys) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "local: delivered 3" in out
    assert main(["events"]) == 0
    listing = capsys.readouterr().out
    assert "ZeroDivisionError" in listing and "logon issue" in listing
    assert "KeyError" in listing, "the logged exception, by its type"
    assert main(["events", "--json", "--limit", "2"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert len(events) == 2 and all("eventType" in e for e in events)


def test_empty_inbox_says_so(capsys) -> None:
    assert main(["events"]) == 0
    assert "no events" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["events", "--limit", "x"], ["nosuch"], [], ["events", "--limit", "0"]]
)
def test_bad_arguments_are_one_line_and_exit_2(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_bad_backend_url_is_one_line_and_exit_2(capsys) -> None:
    assert main(["demo", "--backend", "nosuch://x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "nosuch" in err


def test_python_dash_m_runs_the_cli() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("alertkit ")
