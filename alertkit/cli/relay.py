"""``alertkit relay``: deliver a Redis Stream's events (:mod:`alertkit.relay`), and its status.

``alertkit relay --from redis-stream://... --to pagerduty://KEY --to slack://...`` runs one relay
until SIGTERM or SIGINT, then stops within ``--stop-timeout`` and exits 0, leaving pending what it
did not deliver. ``alertkit relay status --from URL [--json]`` prints the consumer groups.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from typing import Any

from alertkit.cli.arguments import positive_int, seconds
from alertkit.model.errors import ConfigError

#: The longest ``--claim-after`` and ``--stop-timeout`` taken (a day).
MAX_SECONDS = 86_400.0


def add_relay_command(subparsers: Any) -> None:
    """Add ``alertkit relay`` and ``alertkit relay status`` to the CLI."""
    parser = subparsers.add_parser(
        "relay", help="deliver the events of a Redis Stream (redis-stream backend) to destinations"
    )
    _from(parser, required=False)  # required, but the status action takes its own
    parser.add_argument(
        "--to",
        action="append",
        metavar="URL",
        help="destination URL (repeatable), e.g. pagerduty://KEY; default $ALERTKIT_BACKENDS",
    )
    parser.add_argument("--group", default="alertkit", help="consumer group (default alertkit)")
    parser.add_argument("--consumer", help="this relay's name in the group (default HOST-PID)")
    parser.add_argument(
        "--claim-after",
        type=seconds(MAX_SECONDS),
        default=60.0,
        metavar="SECONDS",
        help="take over entries a silent relay held this long (default 60)",
    )
    parser.add_argument(
        "--max-deliveries",
        type=positive_int,
        default=5,
        metavar="N",
        help="deliveries of one entry without an outcome before its dead letter (default 5)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=seconds(MAX_SECONDS),
        default=10.0,
        metavar="SECONDS",
        help="budget of a stop on SIGTERM/SIGINT (default 10)",
    )
    parser.add_argument(
        "--storm-window",
        type=seconds(MAX_SECONDS, zero=True),
        default=60.0,
        metavar="SECONDS",
        help="storm control window per fingerprint; 0: off (default 60)",
    )
    parser.add_argument(
        "--spool", action="store_true", help="spool what cannot be delivered now, then ack it"
    )
    parser.add_argument("--spool-path", metavar="FILE", help="the spool file (implies --spool)")
    parser.set_defaults(func=run_relay)
    actions = parser.add_subparsers(dest="relay_command", metavar="ACTION")
    status = actions.add_parser("status", help="consumer groups, pending, lag, dead letters")
    _from(status, required=True)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=show_status)


def _from(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        required=required,
        metavar="URL",
        help="the stream, redis-stream://[:password@]host:port/db?stream=alertkit:events",
    )


def make_relay(args: argparse.Namespace) -> Any:
    """The relay the arguments describe (a seam: fleet options add to it here)."""
    from alertkit.relay import Relay

    return Relay(
        args.source,
        args.to,
        group=args.group,
        consumer=args.consumer,
        claim_after=args.claim_after,
        max_deliveries=args.max_deliveries,
        spool=args.spool,
        spool_path=args.spool_path,
        storm_window=args.storm_window,
        stop_timeout=args.stop_timeout,
    )


def run_relay(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop."""
    if not args.source:
        raise ConfigError("relay: --from URL is required (redis-stream://host:6379/0?stream=...)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    relay = make_relay(args)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: relay.request_stop())
    names = ", ".join(backend.name for backend in relay.destinations)
    logging.getLogger("alertkit.relay").info(
        "relay %s of group %s: %s -> %s", relay.consumer, relay.group, relay, names
    )
    relay.run()
    stats = relay.stats()
    logging.getLogger("alertkit.relay").info(
        "relay stopped: read %d, claimed %d, acked %d, dead letters %d, left pending %d",
        stats["read"],
        stats["claimed"],
        stats["acked"],
        stats["dead_lettered"],
        stats["left_pending"],
    )
    return 0


def show_status(args: argparse.Namespace) -> int:
    """``relay status``: the table, or JSON with ``--json``."""
    from alertkit.relay.relay import _source
    from alertkit.relay.status import relay_status, status_table

    source = _source(args.source)
    try:
        status = relay_status(source)
    except source.errors as exc:
        raise ConfigError(
            source.mask(f"relay status: cannot read {source.describe()}: {exc}")
        ) from None
    finally:
        source.close()
    print(json.dumps(status, indent=2) if args.json else status_table(status))
    return 0
