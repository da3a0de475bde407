"""The command line: demo through the real pipeline, the inbox listing, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from alertkit import Client
from alertkit.cli import main

SECRET = "hunter2-pw-7f3a9c"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m alertkit ARGS`` in a child process (the real exit status and stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "alertkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_demo_lists_every_event_it_sent_and_events_demo_shows_them(capsys) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "local: delivered 3" in out
    sent = [line for line in out.splitlines() if "-> local: delivered" in line]
    assert len(sent) == 3, "one line per event, the logging handler's included"
    assert any("handler" in line for line in sent)
    assert main(["events", "--demo"]) == 0
    listing = capsys.readouterr().out
    assert "ZeroDivisionError" in listing and "logon issue" in listing
    assert "KeyError" in listing, "the logged exception, by its type"
    assert main(["events", "--demo", "--json", "--limit", "2"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert len(events) == 2 and all("eventType" in e for e in events)


def test_demo_writes_to_its_own_inbox_and_says_where(alertkit_home: Path, capsys) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    demo_db = alertkit_home / "demo.db"
    assert demo_db.is_file() and str(demo_db) in out
    assert not (alertkit_home / "events.db").exists(), "the application's inbox is left alone"
    assert main(["events"]) == 0
    assert "no events" in capsys.readouterr().out


def test_demo_ignores_alertkit_backends_unless_given_backend(
    alertkit_home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A demo must not page the people behind $ALERTKIT_BACKENDS; --backend is how to aim it."""
    monkeypatch.setenv("ALERTKIT_BACKENDS", f"local://{tmp_path / 'production.db'}")
    assert main(["demo"]) == 0
    assert not (tmp_path / "production.db").exists()
    chosen = tmp_path / "chosen.db"
    assert main(["demo", "--backend", f"local://{chosen}"]) == 0
    assert "local: delivered 3" in capsys.readouterr().out
    assert main(["events", "--path", str(chosen)]) == 0
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_empty_inbox_says_so(capsys) -> None:
    assert main(["events"]) == 0
    assert "no events" in capsys.readouterr().out


def test_events_masks_the_api_key_in_json_and_table(tmp_path: Path, capsys) -> None:
    inbox = tmp_path / "app.db"
    client = Client(api_key=SECRET, backends=[f"local://{inbox}"], register_atexit=False)
    client.log({"eventtype": "t", "eventmessage": "m"}, "error", exc_info=False)
    assert client.flush(10)
    client.shutdown(5)
    stored = sqlite3.connect(inbox).execute("SELECT json FROM events").fetchone()[0]
    assert SECRET in stored, "the inbox keeps the wire event as sent"
    assert main(["events", "--json", "--path", str(inbox)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and json.loads(out)[0]["apiKey"] != SECRET
    assert main(["events", "--path", str(inbox)]) == 0
    assert SECRET not in capsys.readouterr().out


# -- every mistake is one line on stderr and exit status 2 -----------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """A directory, a missing file, a text file and an SQLite file that is not an inbox."""
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE other (x)")
    conn.close()
    return {
        "dir": str(tmp_path),
        "missing": str(tmp_path / "evnets.db"),
        "text": str(text),
        "foreign": str(foreign),
    }


def expect_one_line_exit_2(argv: Sequence[str], capsys) -> str:
    """Run ``main(argv)``; assert exit status 2 with one ``error`` line on stderr; return it."""
    try:
        status = main(list(argv))
    except SystemExit as exit_info:  # argparse's own errors
        status = exit_info.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert status == 2, f"{argv}: exit status {status}, stderr {err!r}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], f"{argv}: {err!r}"
    return lines[0]


def resolve(argv: Sequence[str], files: dict[str, str]) -> list[str]:
    """``argv`` with ``{dir}``, ``{missing}``, ``{text}`` ... replaced by the fixture's paths."""
    return [arg.format(**files) for arg in argv]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nosuch"],
        ["--nosuch"],
        ["demo", "--timeout", "-1"],
        ["demo", "--timeout", "0"],
        ["demo", "--timeout", "nan"],
        ["demo", "--timeout", "inf"],
        ["demo", "--timeout", "1e300"],
        ["demo", "--timeout", "soon"],
        ["demo", "--backend", "nosuch://x"],
        ["demo", "--backend", "pagerduty://0123456789abcdef0123456789abcdef?bogus=1"],
        ["demo", "--backend", "local://{dir}"],
        ["demo", "--backend", "no-scheme-at-all"],
        ["events", "--limit", "x"],
        ["events", "--limit", "0"],
        ["events", "--demo", "--path", "{text}"],
        ["events", "--path", "{dir}"],
        ["events", "--path", "{missing}"],
        ["events", "--path", "{text}"],
        ["events", "--path", "{foreign}"],
        ["events", "--json", "--path", "{text}"],
    ],
)
def test_demo_and_events_errors_are_one_line_and_exit_2(argv, files, capsys) -> None:
    expect_one_line_exit_2(resolve(argv, files), capsys)


def test_a_missing_inbox_file_names_the_file(files, capsys) -> None:
    line = expect_one_line_exit_2(["events", "--path", files["missing"]], capsys)
    assert files["missing"] in line and "no such file" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--backend", f"password={SECRET}"],
        ["demo", "--timeout", f"token={SECRET}"],
    ],
)
def test_an_error_line_masks_credentials(argv, capsys) -> None:
    line = expect_one_line_exit_2(argv, capsys)
    assert SECRET not in line


def test_the_process_prints_no_traceback(files) -> None:
    """The installed entry point, not only ``main``: a bad file is one line and status 2."""
    result = run("events", "--path", files["text"])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("alertkit: error: ")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [
        ["spool"],
        ["spool", "list", "--limit", "0"],
        ["spool", "list", "--path", "{dir}"],
        ["spool", "list", "--path", "{text}"],
        ["spool", "list", "--path", "{foreign}"],
        ["spool", "list", "--path", "{missing}"],
        ["spool", "purge", "--yes", "--path", "{text}"],
        ["spool", "replay", "--path", "{text}", "--url", "local://"],
        ["spool", "replay", "--url", "nosuch://x"],
        ["spool", "replay", "--attempts", "0"],
        ["spool", "replay", "--backoff", "-1"],
        ["bridge"],
        ["bridge", "--token", "t", "--listen", "nonsense", "local://"],
        ["bridge", "--token", "t", "--listen", "127.0.0.1:99999", "local://"],
        ["bridge", "--token", "t", "nosuch://x"],
        ["bridge", "local://"],
        ["bridge", "--token", "t", "--listen", "127.0.0.1:{busy}", "local://"],
    ],
)
def test_bridge_and_spool_errors_are_one_line(argv, files, busy_port, tmp_path) -> None:
    """The ``spool`` and ``bridge`` subcommands under the same contract. Their bodies belong to
    their own modules: re-run this test after merging their fixes. Child processes, so that a
    bridge that wrongly starts serving is stopped by the timeout instead of hanging the run."""
    files = {**files, "busy": str(busy_port)}
    result = run(*resolve(argv, files), env={"ALERTKIT_BRIDGE_TOKEN": ""})
    assert result.returncode == 2, f"{argv}: status {result.returncode}, {result.stderr!r}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], f"{argv}: {result.stderr!r}"


def test_python_dash_m_runs_the_cli() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("alertkit ")


def test_a_reader_that_stops_early_gets_no_error(tmp_path: Path) -> None:
    """``alertkit events --json | head``: the closed pipe is not a mistake worth a line."""
    inbox = tmp_path / "big.db"
    client = Client(backends=[f"local://{inbox}"], register_atexit=False)
    for n in range(200):
        client.log({"eventtype": "t", "eventmessage": f"{n} " + "x" * 1000}, exc_info=False)
    assert client.flush(20)
    client.shutdown(5)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alertkit",
            "events",
            "--json",
            "--limit",
            "200",
            "--path",
            str(inbox),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    try:
        assert child.stdout.read(1) == b"["
        child.stdout.close()  # over 200 KB still to write: far more than a pipe holds
        assert child.wait(timeout=60) in (0, 1)
        assert child.stderr.read() == b""
    finally:
        child.kill()  # a no-op once it has exited
        child.wait(timeout=10)
        child.stderr.close()


def test_events_shows_the_fingerprint_column_when_an_event_has_one(tmp_path: Path, capsys) -> None:
    from alertkit import Client

    inbox = tmp_path / "inbox.db"
    client = Client(backends=[f"local://{inbox}"], sample_system=False, register_atexit=False)
    plain = client.envelope_for(client.create_new_app_event("error", event_message="plain"))
    grouped = client.envelope_for(client.create_new_app_event("error", event_message="grouped"))
    grouped.fingerprint = ["db-timeout", "acme"]
    client.send_event(plain, timeout=5)
    client.send_event(grouped, timeout=5)
    client.shutdown(1)
    assert main(["events", "--path", str(inbox)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "fingerprint" in lines[0]
    assert any("db-timeout/acme" in line and "grouped" in line for line in lines)
    assert main(["events", "--json", "--path", str(inbox)]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["_fingerprint"] for e in events] == [["db-timeout", "acme"], None]
