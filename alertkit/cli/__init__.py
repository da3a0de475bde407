"""The ``alertkit`` command: ``demo``, ``events`` and (from their modules) ``bridge``, ``relay``,
``silence``, ``spool``.

Every mistake, whether in the arguments, a file they name or a value they carry, is one line on
stderr (``alertkit: error: ...``) and exit status 2, never a traceback. No output shows a credential:
what the CLI prints from events and errors passes through the scrubber first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from alertkit import __version__
from alertkit.cli.arguments import positive_int, seconds

if TYPE_CHECKING:
    from alertkit.delivery.pipeline import Results
    from alertkit.model.event import Envelope


#: The longest ``--timeout`` taken: an hour is already more than a demo needs.
MAX_TIMEOUT = 3600.0


class CliError(Exception):
    """A mistake in the command line or in a file it names: :func:`main` prints it on one line
    and exits with status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        message = " ".join(_masked(message).split())  # the value may be a pasted secret
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def report_error(message: str) -> int:
    """Print ``message`` as the one ``alertkit: error:`` line on stderr; return exit status 2.

    The one place every subcommand's runtime error goes through: newlines are folded (one line),
    credentials masked and the length bounded.
    """
    line = " ".join(_masked(message).split())
    if len(line) > 500:
        line = line[:499] + "…"
    print(f"alertkit: error: {line}", file=sys.stderr)
    return 2


def _masked(text: str) -> str:
    """``text`` with every credential the scrubber recognises masked."""
    from alertkit.policy.scrub import Scrubber

    return Scrubber().scrub_text(text)


# -- demo ------------------------------------------------------------------------------------------


def demo_inbox_path() -> Path:
    """``$ALERTKIT_HOME/demo.db``: the demo's own inbox, apart from the application's."""
    from alertkit.backends.local import alertkit_home

    return alertkit_home() / "demo.db"


def _demo(args: argparse.Namespace) -> int:
    """Send a small realistic set of events through the real pipeline and print each one's result.

    Without ``--backend`` the events go to the demo inbox (never the application's inbox nor
    ``$ALERTKIT_BACKENDS``, which may page people), and the output says where that is.
    """
    from alertkit import Client, CustomData, CustomDoubleData, CustomStringData
    from alertkit.capture.handler import AlertHandler

    class DemoClient(Client):
        """Keeps a future for what the logging handler submits, so its event gets a line too."""

        handled: list[Future[Results]] = []

        def submit_capture(self, capture: Callable[[], Envelope | None]) -> bool:
            future: Future[Results] = Future()
            self.handled.append(future)
            return self.pipeline.submit(capture, future)

    backends = args.backend or [f"local://{demo_inbox_path()}"]
    client = DemoClient(
        app_version="2.4.1",
        deployment_stage="demo",
        app_name="alertkit-demo",
        backends=backends,
        register_atexit=False,
    )
    print(f"alertkit {__version__} demo: sending to {', '.join(map(repr, client.backends))}")
    if not args.backend:
        print(f"  (the demo inbox {demo_inbox_path()}, not your application's inbox)")
    futures: list[tuple[str, Future[Results]]] = []
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
    futures.extend(("logged exception (error, handler)", f) for f in client.handled)

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
    failed = _print_results(futures)
    for name, entry in client.stats().items():
        cause = entry["last_failure"]
        print(
            f"  {name}: delivered {entry['delivered']}, retried {entry['retried']}, "
            f"rejected {entry['rejected']}, spooled {entry['spooled']}, "
            f"dropped {entry['dropped']}" + (f"; last error: {_masked(cause)}" if cause else "")
        )
    if not args.backend:
        print("See them with: alertkit events --demo")
    return 0 if ok and not failed else 1


def _print_results(futures: Sequence[tuple[str, Future[Results]]]) -> int:
    """One line per event and backend; returns how many were not delivered."""
    from alertkit.model.outcomes import Delivered

    failed = 0
    for label, future in futures:
        results = future.result(0) if future.done() else {}
        if not results:
            failed += 1
            print(f"  {label:<34} -> no result in time (still queued or retrying)")
        for backend, result in results.items():
            status = "delivered" if isinstance(result, Delivered) else _masked(repr(result))
            failed += not isinstance(result, Delivered)
            print(f"  {label:<34} -> {backend}: {status}")
    return failed


# -- events ----------------------------------------------------------------------------------------


def _events(args: argparse.Namespace) -> int:
    """List an inbox, newest first; a missing, foreign or unreadable file is a one-line error."""
    from alertkit.backends.local import default_inbox_path, read_events
    from alertkit.policy.scrub import Scrubber

    path = (
        Path(args.path) if args.path else demo_inbox_path() if args.demo else default_inbox_path()
    )
    if path.is_dir():
        raise CliError(f"events: {path} is a directory, not an inbox file")
    if not path.exists():
        if args.path:
            raise CliError(f"events: no such file: {path}")
        print(f"no events in {path}")
        return 0
    try:
        rows = read_events(path, args.limit)
    except (sqlite3.Error, ValueError) as exc:  # not SQLite, not an inbox, unreadable, damaged
        raise CliError(f"events: {path} is not a readable alertkit inbox ({exc})") from None
    scrubber = Scrubber()
    if args.json:
        events = [
            row["event"]
            | {
                "_logger": row["logger"],
                "_details": row["details"],
                "_breadcrumbs": row["breadcrumbs"],
                "_fingerprint": row["fingerprint"],
            }
            for row in rows
        ]
        print(json.dumps(scrubber.scrub_data(events), indent=2))
        return 0
    if not rows:
        print(f"no events in {path}")
        return 0
    # The fingerprint column only when an event has one: most inboxes group by alertkit's own.
    grouped = any(row["fingerprint"] for row in rows)
    group_head = f"{'fingerprint':<24}  " if grouped else ""
    print(f"{'time (UTC)':<19}  {'level':<7}  {'type':<30}  {group_head}message")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["time_ms"] / 1000))
        message = (row["message"] or "").splitlines()[0] if row["message"] else ""
        parts = row["fingerprint"] or []
        group = f"{_cut('/'.join(map(str, parts)), 24):<24}  " if grouped else ""
        print(
            f"{when:<19}  {row['level'] or '':<7}  {_cut(row['event_type'], 30):<30}  {group}"
            f"{_cut(scrubber.scrub_text(message), 80)}"
        )
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


#: Subcommands that other modules add: ``name -> (module, function)``; the function takes the
#: subparsers object and registers its command (keeps optional features out of this file).
PLUGINS: dict[str, tuple[str, str]] = {
    "bridge": ("alertkit.cli.bridge", "add_bridge_command"),
    "relay": ("alertkit.cli.relay", "add_relay_command"),
    "silence": ("alertkit.cli.silence", "add_silence_command"),
    "spool": ("alertkit.cli.spool", "add_spool_command"),
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
        help="backend URL (repeatable); default: the demo inbox $ALERTKIT_HOME/demo.db",
    )
    demo.add_argument(
        "--timeout",
        type=seconds(MAX_TIMEOUT),
        default=10.0,
        help="seconds to wait for delivery (default 10)",
    )
    demo.set_defaults(func=_demo)

    events = commands.add_parser("events", help="list the local inbox, newest first")
    events.add_argument("--json", action="store_true", help="print the events as JSON")
    events.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")
    where = events.add_mutually_exclusive_group()
    where.add_argument("--path", help="inbox file (default $ALERTKIT_HOME/events.db)")
    where.add_argument(
        "--demo", action="store_true", help="the demo's inbox ($ALERTKIT_HOME/demo.db)"
    )
    events.set_defaults(func=_events)

    import importlib

    for module_name, function in PLUGINS.values():
        register: Callable[[Any], None] = getattr(importlib.import_module(module_name), function)
        register(commands)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again
    (the recipe of the Python docs' note on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit status. Argument mistakes exit 2 from the parser (SystemExit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        print("alertkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `alertkit events --json | head`: the reader has what it wanted
        _silence_stdout()
        return 1
    except (CliError, ValueError, OSError, sqlite3.Error) as exc:  # ConfigError is a ValueError
        return report_error(str(exc))
    except Exception as exc:  # a bug still gets one line, not a traceback
        return report_error(f"{type(exc).__name__}: {exc}")
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
