"""``alertkit silence add | list | expire``: mute matching events fleet-wide for a while.

The silences live in Redis beside the stream (:mod:`alertkit.relay.silences`), so every relay of
the stream honours them within its refresh interval::

    alertkit silence add --from redis-stream://127.0.0.1:6379/0?stream=alertkit:events \\
        --match 'logger=payments type=PaymentDeclined' --for 2h --comment "processor down"
    alertkit silence list --from URL [--expired] [--json]
    alertkit silence expire --from URL ID

A bad matcher, duration or id, or an unreachable Redis, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from alertkit.model.errors import ConfigError
from alertkit.relay.silences import (
    FIELDS,
    Silence,
    Silences,
    parse_duration,
    parse_matchers,
    silence_rows,
    silence_table,
)

#: The longest silence taken: a year (a longer one is forgotten rather than meant).
MAX_DURATION = 366 * 86_400.0


def add_silence_command(subparsers: Any) -> None:
    """Register ``alertkit silence`` and its ``add``, ``list`` and ``expire`` actions."""
    parser = subparsers.add_parser(
        "silence", help="mute matching events on every relay for a while"
    )
    actions = parser.add_subparsers(dest="silence_command", metavar="ACTION")
    actions.required = True

    add = actions.add_parser("add", help="add a silence")
    _from(add)
    add.add_argument(
        "--match",
        required=True,
        type=_argument(parse_matchers),
        metavar="MATCHERS",
        help="space-separated name=value, name!=value, name=~regex, name!~regex; names: "
        f"{', '.join(FIELDS)}, tag.NAME",
    )
    add.add_argument(
        "--for",
        dest="duration",
        required=True,
        type=_argument(_duration),
        metavar="DURATION",
        help="how long, e.g. 30m, 2h, 1d, 1h30m",
    )
    add.add_argument("--comment", default="", help="why (shown by silence list)")
    add.add_argument("--by", dest="created_by", help="who (default USER@HOST)")
    add.set_defaults(func=_add)

    listing = actions.add_parser("list", help="active silences and what each has muted")
    _from(listing)
    listing.add_argument("--expired", action="store_true", help="also those ended in 5 days")
    listing.add_argument("--json", action="store_true", help="print the silences as JSON")
    listing.set_defaults(func=_list)

    expire = actions.add_parser("expire", help="end a silence now")
    _from(expire)
    expire.add_argument("id", metavar="ID", help="the silence's id (silence list shows it)")
    expire.set_defaults(func=_expire)


def _from(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the stream, redis-stream://[:password@]host:port/db?stream=alertkit:events",
    )


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError (a one-line usage error)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds > MAX_DURATION:
        raise ValueError(f"duration: at most a year, got {text!r}")
    return seconds


def _run(args: argparse.Namespace, action: Callable[[Silences], int]) -> int:
    """Open the stream's silences, run ``action``, and turn a Redis failure into one line."""
    from alertkit.backends.redis_stream import RedisStreamBackend

    if not args.source.startswith(("redis-stream:", "rediss-stream:")):
        raise ConfigError("silence: --from must be a redis-stream:// or rediss-stream:// URL")
    source = RedisStreamBackend.from_url(args.source)
    assert isinstance(source, RedisStreamBackend)
    conn: Any = source.client()  # a redis.RedisCluster when the URL names a cluster node
    try:
        return action(Silences(conn, source.stream))
    except source.errors as exc:
        raise ConfigError(
            source.mask(f"silence: cannot reach {source.describe()}: {exc}")
        ) from None
    finally:
        conn.close()
        source.close()


def _add(args: argparse.Namespace) -> int:
    by = args.created_by or f"{getpass.getuser()}@{socket.gethostname()}"

    def add(silences: Silences) -> int:
        silence = silences.add(args.match, args.duration, args.comment, by)
        print(f"silence {silence.id} until {_when(silence.ends)}: {_matchers(silence)}")
        return 0

    return _run(args, add)


def _list(args: argparse.Namespace) -> int:
    def show(silences: Silences) -> int:
        rows = silence_rows(silences, expired=args.expired)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(silence_table(rows))
        return 0

    return _run(args, show)


def _expire(args: argparse.Namespace) -> int:
    def expire(silences: Silences) -> int:
        try:
            silence = silences.expire(args.id)
        except KeyError:
            raise ConfigError(f"silence expire: no silence with id {args.id!r}") from None
        print(f"silence {silence.id} expired at {_when(silence.ends)}")
        return 0

    return _run(args, expire)


def _matchers(silence: Silence) -> str:
    return " ".join(str(m) for m in silence.matchers)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))
