"""The ``alertkit`` command: ``demo``, ``events`` and (with their issues) ``test``, ``bridge``, ``spool``.

Bad arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from alertkit import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _demo(args: argparse.Namespace) -> int:
    """Send a small realistic set of events through the real pipeline and print the results."""
    from alertkit import Client, CustomData, CustomDoubleData, CustomStringData
    from alertkit.handler import AlertHandler
    from alertkit.outcomes import Delivered

    client = Client(
        app_version="2.4.1",
        deployment_stage="demo",
        app_name="alertkit-demo",
        backends=args.backend or None,
        register_atexit=False,
    )
    print(f"alertkit {__version__} demo: sending to {', '.join(map(repr, client.backends))}")
    futures = []
    futures.append(
        (
            "log call (info)",
            client.log(
                {
                    "user": "jill@example.com",
                    "eventtype": "logon issue",
                    "eventmessage": "User refreshed the page.",
                    "session": "s-42",
                },
                "info",
                "logon script",
                exc_info=False,
            ),
        )
    )

    logger = logging.getLogger("alertkit_demo.checkout")
    logger.propagate = False
    handler = AlertHandler(client=client)
    logger.addHandler(handler)
    try:
        raise KeyError("cart-7731")
    except KeyError:
        logger.exception("Checkout failed for order %s", 7731, extra={"order_id": 7731})

    try:
        1 / 0  # noqa: B018 - the demo's exception
    except ZeroDivisionError:
        event = client.create_new_app_event("fatal", exc_info=True)
        event.custom_properties = CustomData(
            string_data=CustomStringData(custom_data1="checkout"),
            double_data=CustomDoubleData(custom_data1=42.5),
        )
        futures.append(("event with custom data (fatal)", client.send_event_async(event)))

    ok = client.flush(args.timeout)
    logger.removeHandler(handler)
    # Shut down first, so that the results and counts printed are the final ones.
    client.shutdown(args.timeout)
    failed = 0
    for label, future in futures:
        results = future.result(0) if future.done() else {}
        for backend, result in results.items():
            status = "delivered" if isinstance(result, Delivered) else repr(result)
            failed += not isinstance(result, Delivered)
            print(f"  {label:<34} -> {backend}: {status}")
    for name, entry in client.stats().items():
        cause = entry["last_failure"]
        print(
            f"  {name}: delivered {entry['delivered']}, retried {entry['retried']}, "
            f"rejected {entry['rejected']}, spooled {entry['spooled']}, "
            f"dropped {entry['dropped']}" + (f"; last error: {cause}" if cause else "")
        )
    local = [b for b in client.backends if b.scheme == "local"]
    if local:
        print(f"See them with: alertkit events --path {getattr(local[0], 'path', '')}")
    return 0 if ok and not failed else 1


def _events(args: argparse.Namespace) -> int:
    """List the local inbox, newest first."""
    from alertkit.backends.local import default_inbox_path, read_events

    path = Path(args.path) if args.path else default_inbox_path()
    rows = read_events(path, args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    row["event"] | {"_logger": row["logger"], "_details": row["details"]}
                    for row in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print(f"no events in {path}")
        return 0
    print(f"{'time (UTC)':<19}  {'level':<7}  {'type':<30}  message")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["time_ms"] / 1000))
        message = (row["message"] or "").splitlines()[0] if row["message"] else ""
        print(
            f"{when:<19}  {row['level'] or '':<7}  {_cut(row['event_type'], 30):<30}  "
            f"{_cut(message, 80)}"
        )
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


#: Subcommands that other modules add: ``name -> (module, function)``; the function takes the
#: subparsers object and registers its command (keeps optional features out of this file).
PLUGINS: dict[str, tuple[str, str]] = {
    "bridge": ("alertkit.bridge", "add_bridge_command"),
    "spool": ("alertkit.spool_cli", "add_spool_command"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="alertkit", description="alertkit command line")
    parser.add_argument("--version", action="version", version=f"alertkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser("demo", help="send a few realistic events through the pipeline")
    demo.add_argument(
        "--backend",
        action="append",
        metavar="URL",
        help="backend URL (repeatable); default: $ALERTKIT_BACKENDS or the inbox",
    )
    demo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for delivery")
    demo.set_defaults(func=_demo)

    events = commands.add_parser("events", help="list the local inbox, newest first")
    events.add_argument("--json", action="store_true", help="print the events as JSON")
    events.add_argument("--limit", type=_positive_int, default=20, help="how many (default 20)")
    events.add_argument("--path", help="inbox file (default $ALERTKIT_HOME/events.db)")
    events.set_defaults(func=_events)

    import importlib

    for module_name, function in PLUGINS.values():
        register: Callable[[Any], None] = getattr(importlib.import_module(module_name), function)
        register(commands)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except ValueError as exc:  # configuration errors (bad backend URL ...) are one line
        print(f"alertkit: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
