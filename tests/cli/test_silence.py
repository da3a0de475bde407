"""``alertkit silence add | list | expire`` against a real redis-server: what an operator types,
what every relay then honours, and one line with exit status 2 for every mistake."""

from __future__ import annotations

from typing import Any

import pytest

from alertkit.cli import main
from alertkit.relay.silences import Silences
from tests.relay._events import envelope
from tests.standins.redis import RedisServer, redis_server, redis_server_session

__all__ = ["redis_server", "redis_server_session"]
STREAM = "alertkit:events"


def url(server: RedisServer) -> str:
    return f"redis-stream://127.0.0.1:{server.port}/0?stream={STREAM}"


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_add_list_expire(redis_server: RedisServer, capsys: Any) -> None:
    source = url(redis_server)
    argv = ["silence", "add", "--from", source, "--match", "logger=payments type=PaymentDeclined"]
    assert run([*argv, "--for", "2h", "--comment", "processor down", "--by", "jill"]) == 0
    added = capsys.readouterr().out
    silence_id = added.split()[1]
    relays = Silences(redis_server.client(), STREAM)
    silence = relays.match(envelope())
    assert silence is not None and silence.id == silence_id, "every relay now mutes it"
    relays.record(silence, envelope(), "1-0")

    assert run(["silence", "list", "--from", source]) == 0
    table = capsys.readouterr().out
    assert silence_id in table and "processor down" in table and "jill" in table
    assert "logger=payments type=PaymentDeclined" in table
    row = next(line for line in table.splitlines() if line.startswith(silence_id))
    assert row.split()[3] == "1", "what it muted so far"

    assert run(["silence", "expire", "--from", source, silence_id]) == 0
    assert "expired" in capsys.readouterr().out
    assert Silences(redis_server.client(), STREAM).match(envelope()) is None
    assert run(["silence", "list", "--from", source, "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert run(["silence", "list", "--from", source, "--json", "--expired"]) == 0
    assert '"active": false' in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["silence", "add", "--from", "URL", "--match", "colour=red", "--for", "2h"],
        ["silence", "add", "--from", "URL", "--match", "logger=payments", "--for", "soon"],
        ["silence", "add", "--from", "URL", "--match", "logger=payments", "--for", "400d"],
        ["silence", "add", "--from", "URL", "--match", "logger=payments"],
        ["silence", "add", "--from", "redis://127.0.0.1:1/0", "--match", "logger=a", "--for", "1h"],
        ["silence", "expire", "--from", "URL", "no-such-id"],
        ["silence", "list"],
        ["silence"],
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    redis_server: RedisServer, argv: list[str], capsys: Any
) -> None:
    argv = [url(redis_server) if a == "URL" else a for a in argv]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_an_unreachable_redis_is_one_line_without_the_password(capsys: Any) -> None:
    source = "redis-stream://:s3cret-pass@127.0.0.1:1/0?stream=x&connect_timeout=0.5"
    assert run(["silence", "list", "--from", source]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach" in err and "s3cret-pass" not in err
