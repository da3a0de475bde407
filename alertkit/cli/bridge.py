"""``alertkit bridge``: serve the webhook bridge (:mod:`alertkit.servers.bridge`) on a port."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from alertkit.cli.arguments import positive_int
from alertkit.model.errors import ConfigError
from alertkit.servers.bridge import serve


def add_bridge_command(subparsers: Any) -> None:
    """Add ``alertkit bridge --listen HOST:PORT --token SECRET BACKEND_URL...`` to the CLI."""
    parser = subparsers.add_parser(
        "bridge", help="receive monitoring webhooks (Guance) and send them to PagerDuty"
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("ALERTKIT_BRIDGE_TOKEN"),
        help="shared secret requests must carry; default $ALERTKIT_BRIDGE_TOKEN",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=8, help="worker threads (default 8)"
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=500,
        metavar="N",
        help="connections served at once; more wait in the backlog (default 500)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_int,
        default=10,
        metavar="SECONDS",
        help="longest time to send one request, and to keep an idle connection (default 10)",
    )
    parser.add_argument(
        "backend", nargs="+", metavar="URL", help="backend URL(s), e.g. pagerduty://ROUTING_KEY"
    )
    parser.set_defaults(func=run_bridge)


def run_bridge(args: argparse.Namespace) -> int:
    """The ``bridge`` subcommand: serve until interrupted; 0 on a clean stop."""
    if not args.token:
        raise ConfigError("bridge: --token (or $ALERTKIT_BRIDGE_TOKEN) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # waitress warns at every request queued behind busy threads: one line per request under load
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    serve(
        args.listen,
        args.token,
        args.backend,
        threads=args.threads,
        max_connections=args.max_connections,
        timeout=float(args.timeout),
    )
    return 0
