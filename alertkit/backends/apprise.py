"""apprise: every event as a notification to the ~100 services apprise knows (Discord, Teams, ntfy ...).

Each event becomes one notification per configured service: the title and body are the readable
summary the Slack and email backends show (:mod:`alertkit.backends._message`), the notify type
comes from the level (debug and info ``info``, warning ``warning``, error and fatal ``failure``; a
resolved incident ``success``), and nothing is ever attached.

apprise's own ``notify()`` answers one bool for all services and logs the why. This backend
instead calls each service itself, collects the lines apprise logs meanwhile on that thread, and
turns each service's result into an outcome: a service that failed with an HTTP 4xx (other than
408/425/429) is rejected for good, any other failure is retried, and a retry goes only to the
services that have not taken the event yet, so nobody is paged twice. Each service's socket
timeouts and its pacing are capped at the backend's ``timeout`` (apprise's ``cto``/``rto``), which
bounds each request a send makes.

Every service is built at construction, so a URL or configuration entry apprise cannot use is a
:class:`~alertkit.model.errors.ConfigError` with apprise's reason. The secrets are what apprise
itself hides in ``url(privacy=True)``; they are masked in ``repr()``, reasons, alertkit's and
apprise's log lines.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote

from alertkit.backends._message import cut, render_text, summarize
from alertkit.backends._options import read_options
from alertkit.backends._redact import redact_in_library_logs
from alertkit.backends.base import MASK, BaseBackend, ClientContext
from alertkit.model.errors import ConfigError, MissingDependency
from alertkit.model.event import Envelope
from alertkit.model.levels import level_from_number
from alertkit.model.outcomes import Delivered, Outcome, Rejected, RetryLater

log = logging.getLogger("alertkit.backends.apprise")

#: alertkit level -> apprise notify type.
NOTIFY_TYPES = {
    "debug": "info",
    "info": "info",
    "warning": "warning",
    "error": "failure",
    "fatal": "failure",
}
#: Events whose services all answered are forgotten after this many more (bounds the memory).
MAX_REMEMBERED = 10_000
_STATUS = re.compile(r"error=(\d{3})")
_PERMANENT = frozenset(range(400, 500)) - {408, 425, 429}
_SPLIT = re.compile(r"[/:@?&=#,;+\s]+")
_MAX_REASON = 400


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        raise MissingDependency("apprise", "apprise", "apprise") from None
    return apprise


class _ThreadLines(logging.Handler):
    """Keeps the apprise log records made on a thread while that thread asks for them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        bucket = getattr(self.local, "records", None)
        if bucket is not None:
            bucket.append(record)

    @contextmanager
    def collect(self) -> Iterator[list[logging.LogRecord]]:
        records: list[logging.LogRecord] = []
        outer = getattr(self.local, "records", None)
        self.local.records = records
        try:
            yield records
        finally:
            self.local.records = outer


_lines = _ThreadLines()
_lines_lock = threading.Lock()


def _listen() -> _ThreadLines:
    """Attach the collector to apprise's logger once per process."""
    with _lines_lock:
        logger = logging.getLogger("apprise")
        if _lines not in logger.handlers:
            logger.addHandler(_lines)
    return _lines


def _said(records: Sequence[logging.LogRecord], level: int = logging.WARNING) -> str:
    """What apprise logged at ``level`` or above, one line."""
    lines = []
    for record in records:
        if record.levelno >= level:
            try:
                lines.append(record.getMessage().strip())
            except Exception:  # a record whose arguments cannot be formatted
                lines.append(str(record.msg))
    return "; ".join(line for line in lines if line)


class AppriseBackend(BaseBackend):
    """Notifies every service of apprise URLs and/or apprise configuration files.

    URL form: ``apprise://`` followed by any apprise URL, unchanged (``apprise://discord://ID/TOKEN``,
    ``apprise://ntfys://ntfy.sh/alerts``), or by the path of an apprise YAML/TEXT configuration file
    (``apprise:///etc/apprise.yml?name=ops``). After an apprise URL alertkit reads only
    ``min_level`` (the rest of the query is the apprise URL's); after a file's path, ``name``,
    ``min_level`` and ``timeout``.

    Args:
        urls: apprise URLs, one string or several.
        config: apprise configuration files or config URLs (YAML or TEXT), one or several.
        timeout: the most seconds a service waits to connect and for each answer (caps
            apprise's ``cto``/``rto``); default the client's.
        name: the backend's name in stats and results (default ``apprise``).
        min_level: the lowest level sent here.

    Raises:
        ConfigError: no service at all, a URL or configuration entry apprise cannot use (with
            apprise's reason), a timeout that is not positive; MissingDependency without apprise.
    """

    scheme = "apprise"
    kinds = frozenset({"event", "resolve"})
    storm_controlled = True
    max_batch = 10
    # One sender: apprise's services pace their own requests (throttle) and are not shared.
    max_concurrency = 1

    def __init__(
        self,
        urls: str | Sequence[str] = (),
        *,
        config: str | Sequence[str] | None = None,
        timeout: float | None = None,
        name: str | None = None,
        min_level: str | int | None = None,
    ) -> None:
        super().__init__(name=name, min_level=min_level)
        if timeout is not None and timeout <= 0:
            raise ConfigError("apprise: timeout must be positive")
        url_list = [urls] if isinstance(urls, str) else list(urls)
        configs = [config] if isinstance(config, str) else list(config or ())
        if not url_list and not configs:
            raise ConfigError("apprise: give urls=[...] or config=... (an apprise YAML/TEXT file)")
        apprise = _apprise()
        _listen()
        self._asset = apprise.AppriseAsset()
        self.servers: list[Any] = [self._service(apprise, url) for url in url_list]
        self.configs = configs
        for source in configs:
            self.servers.extend(self._configured(apprise, source))
        self.timeout = timeout
        self._secrets = sorted(self._find_secrets(), key=len, reverse=True)
        self.app_name: str | None = None
        self._done: OrderedDict[str, set[int]] = OrderedDict()
        self._done_lock = threading.Lock()
        redact_in_library_logs(self)
        self._cap_timeouts()

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> AppriseBackend:
        """``apprise://<apprise URL>`` or ``apprise://<config file>?name=&min_level=&timeout=``.

        After an apprise URL only ``min_level`` is read (the rest of its query is apprise's);
        after a configuration file's path the query is alertkit's alone.

        Raises:
            ConfigError: nothing after ``apprise://``, an unknown option after a file's path.
        """
        rest = url.partition("://")[2]
        options: dict[str, Any] = {}
        if "://" in rest:
            match = re.search(r"([?&])min_level=([^&#]*)&?", rest)
            if match:
                options["min_level"] = unquote(match.group(2))
                rest = (rest[: match.start()] + match.group(1) + rest[match.end() :]).rstrip("?&")
            options["urls"] = [rest]
        else:
            path, _, query = rest.partition("?")
            pairs = dict(parse_qsl(query, keep_blank_values=True))
            text = ("name", "min_level")
            options = read_options("apprise", pairs, text=text, number=("timeout",))
            options["config"] = unquote(path)
        if not rest:
            raise ConfigError("apprise: the URL must be apprise://<apprise URL or config file>")
        return cls(**{**options, **overrides})

    def _service(self, apprise: Any, url: str) -> Any:
        """One apprise service from its URL.

        Raises:
            ConfigError: with apprise's reason and the URL as apprise masks it.
        """
        shown = _loggable(url)
        with _hiding(url), _lines.collect() as records:
            try:
                server = apprise.Apprise.instantiate(
                    url, asset=self._asset, suppress_exceptions=False
                )
            except Exception as exc:  # apprise's plugins raise TypeError and their own errors
                raise ConfigError(f"apprise: url {shown}: {_hide(str(exc), url)}") from None
        if server is None:
            why = _hide(_said(records, logging.INFO), url) or "apprise does not know this URL"
            raise ConfigError(f"apprise: url {shown}: {cut(why, _MAX_REASON)}")
        return server

    def _configured(self, apprise: Any, source: str) -> list[Any]:
        """The services of one configuration file or config URL.

        Raises:
            ConfigError: the file cannot be read, holds no service, or holds an entry apprise
                cannot use (apprise's reason, with secrets masked as apprise masks them).
        """
        shown = _loggable(source)
        with _hiding(source), _lines.collect() as records:
            loader = apprise.Apprise(asset=self._asset)
            added = loader.add(apprise.AppriseConfig(source, asset=self._asset))
            servers = list(loader) if added else []
        trouble = _said(records)
        if trouble or not servers:
            why = trouble or "no service in it"
            raise ConfigError(f"apprise: config {shown}: {cut(why, _MAX_REASON)}")
        return servers

    def _find_secrets(self) -> set[str]:
        """What apprise hides in each service's private URL: the words of ``url()`` that
        ``url(privacy=True)`` does not show."""
        secrets: set[str] = set()
        for server in self.servers:
            shown = set(_SPLIT.split(server.url(privacy=True)))
            for word in _SPLIT.split(server.url(privacy=False)):
                if len(word) >= 4 and word not in shown:
                    secrets.update({word, unquote(word)})
        return secrets

    def bind(self, context: ClientContext) -> None:
        """Take the client's timeout (when none was given) and application name."""
        if self.timeout is None:
            self.timeout = context.timeout
        self.app_name = context.app_name
        self._cap_timeouts()

    def _cap_timeouts(self) -> None:
        """No wait of a service longer than ``timeout``: connecting, each answer, and apprise's
        own pacing between two requests (``request_rate_per_sec``, 5.5 s for many services)."""
        if self.timeout is None:
            return
        for server in self.servers:
            for attribute in (
                "socket_connect_timeout",
                "socket_read_timeout",
                "request_rate_per_sec",
            ):
                current = getattr(server, attribute, None)
                if isinstance(current, int | float) and current > self.timeout:
                    setattr(server, attribute, float(self.timeout))

    # -- sending ---------------------------------------------------------------------------------

    def send(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        return [self._notify(envelope) for envelope in batch]

    def message(self, envelope: Envelope) -> tuple[str, str, str]:
        """``(title, body, notify type)`` of an envelope."""
        summary = summarize(envelope, app_name=self.app_name)
        body = render_text(summary).partition("\n\n")[2] or summary.title
        if envelope.kind == "resolve":
            return f"[RESOLVED] {summary.message or summary.title}", body, "success"
        level = envelope.event.log_level or level_from_number(envelope.levelno)
        return summary.title, body, NOTIFY_TYPES.get(level, "failure")

    def _notify(self, envelope: Envelope) -> Outcome:
        """Notify the services that have not taken ``envelope`` yet; one outcome for all."""
        if self._closed:
            return RetryLater("apprise: the backend is closed (shutdown)")
        try:
            title, body, notify_type = self.message(envelope)
        except Exception as exc:  # an envelope no message can be made of
            return Rejected(self.mask(f"apprise: {type(exc).__name__}: {exc}"))
        with self._done_lock:
            done = set(self._done.get(envelope.event_id, ()))
        retry, rejected, delivered = [], [], len(done)
        for index, server in enumerate(self.servers):
            if index in done:
                continue
            with _lines.collect() as records:
                try:
                    ok = bool(
                        server.notify(
                            body=body, title=title, notify_type=notify_type, body_format="text"
                        )
                    )
                except Exception as exc:  # a plugin bug must not reach the pipeline
                    records.append(logging.makeLogRecord({"msg": repr(exc), "levelno": 40}))
                    ok = False
            service = getattr(server, "service_name", None) or type(server).__name__
            if ok:
                done.add(index)
                delivered += 1
                continue
            why = self.mask(_said(records) or "the service reported a failure")
            status = _STATUS.search(why)
            line = cut(f"{service}: {why}", _MAX_REASON)
            if status and int(status.group(1)) in _PERMANENT:
                done.add(index)  # retrying cannot help it: the others' retries skip it
                rejected.append(line)
            else:
                retry.append(line)
        self._remember(envelope.event_id, done, finished=not retry)
        if retry:
            return RetryLater(
                f"apprise: {len(retry)} of {len(self.servers)} failed: " + " | ".join(retry)
            )
        if rejected:
            return Rejected(
                f"apprise: {len(rejected)} of {len(self.servers)} refused: " + " | ".join(rejected)
            )
        return Delivered({"services": delivered})

    def _remember(self, event_id: str, done: set[int], *, finished: bool) -> None:
        with self._done_lock:
            if finished:
                self._done.pop(event_id, None)
                return
            self._done[event_id] = done
            self._done.move_to_end(event_id)
            while len(self._done) > MAX_REMEMBERED:
                self._done.popitem(last=False)

    # -- description -----------------------------------------------------------------------------

    def describe(self) -> str:
        services = [server.url(privacy=True) for server in self.servers]
        configs = [f"config={_loggable(source)}" for source in self.configs]
        return "apprise: " + ", ".join(configs + services)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def __repr__(self) -> str:
        described = self.mask(self.describe())
        return f"<AppriseBackend name={self.name!r} {len(self.servers)} services: {described}>"


def _loggable(source: str) -> str:
    """A URL or configuration source for a message: a path as it is; a URL with every word but
    its scheme masked (before apprise has parsed it, which part is a token is unknown: in
    ``tgram://TOKEN/CHAT`` it is the "host")."""
    return _hide(source, source) if "://" in source else source


def _words(url: str) -> list[str]:
    """The words of a URL that may be secret (all but its scheme), longest first."""
    rest = url.partition("://")[2] or url
    return sorted({w for w in _SPLIT.split(rest) if len(w) >= 4}, key=len, reverse=True)


def _hide(text: str, url: str) -> str:
    """``text`` without any word of ``url`` (apprise's errors quote the token they refuse)."""
    for word in _words(url):
        text = text.replace(word, MASK)
    return text


class _HideWords(logging.Filter):
    """Masks the words of URLs being loaded in apprise's own log lines."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a log filter must never break logging
            return True
        hidden = _hide(text, self.url)
        if hidden != text:
            record.msg, record.args = hidden, None
        return True


@contextmanager
def _hiding(url: str) -> Iterator[None]:
    """While a URL is loaded, apprise's log lines cannot show it."""
    logger = logging.getLogger("apprise")
    hide = _HideWords(url)
    logger.addFilter(hide)
    try:
        yield
    finally:
        logger.removeFilter(hide)
