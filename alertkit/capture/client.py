"""The client: event defaults from the platform, the public capture API, and the pipeline it owns."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from alertkit._forking import at_fork_in_child, renew_locks, watch_uwsgi_forks
from alertkit.backends.base import Backend, ClientContext
from alertkit.capture import lifetime, uncaught
from alertkit.capture.breadcrumbs import Entry
from alertkit.capture.crumbs import BeforeBreadcrumb, Breadcrumbs
from alertkit.capture.environment import PlatformInfo, SystemSampler, threads_unavailable
from alertkit.capture.events import EventFactory
from alertkit.capture.incidents import change_envelope, lifecycle_envelope
from alertkit.capture.metrics import Metrics
from alertkit.capture.options import (
    check_hooks,
    check_rates,
    make_backends,
    open_spool,
    parse_tags,
    positive,
    processor_chain,
    text,
)
from alertkit.capture.request import Scope, ScopeContext, scope_for_event, scope_for_log
from alertkit.capture.trace import traced
from alertkit.delivery.pipeline import DropCallback, Pipeline, Results
from alertkit.guard import capture_internal_exceptions
from alertkit.model.event import AppEvent, Envelope
from alertkit.model.levels import LEVEL_NUMBERS, normalize_level
from alertkit.model.retry import RetryPolicy
from alertkit.model.stacktrace import (
    resolve_exc_info,
)
from alertkit.policy import Processor
from alertkit.policy.filters import BeforeSendHook
from alertkit.policy.limits import Limits
from alertkit.policy.storm import StormControl

if TYPE_CHECKING:
    from concurrent.futures import Future


class Client:
    """Captures events and hands them to the delivery pipeline; see the module docs for options.

    Args:
        api_key: the event API key (``apiKey`` on the wire); env ``ALERTKIT_API_KEY``.
        app_version: ``contextAppVersion`` of every event.
        deployment_stage: ``deploymentStage`` (development, staging, production or custom).
        application_sku: ``contextAppSku``.
        tags: ``contextTags``; ``"key:value"`` strings or a mapping. Backends that take key/value
            tags (Redis, PagerDuty details) get them as a mapping.
        threads: delivery threads per backend (each backend may allow fewer).
        connections: pooled keep-alive connections per HTTP backend.
        backends: backend URLs (``"pagerduty://KEY"``) or objects; env ``ALERTKIT_BACKENDS``
            (comma-separated); default the local inbox.
        app_name: the application's name (Redis ``service``; the demo prints it).
        hostname: override the host name read from the platform.
        data_center: ``contextDataCenter``.
        data_center_region: ``contextDataCenterRegion``.
        queue_size: capacity of the intake queue and of each backend's queue; a full queue drops
            and counts, never blocks.
        batch_size: most events handed to one ``backend.send`` call; default (None) each
            backend's own ``max_batch`` (Redis 2000, the local inbox 500, HTTP 50, PagerDuty and
            the notifiers 20), which a number can only lower.
        retry: the retry policy for every backend (default :class:`RetryPolicy()`).
        timeout: per-request network timeout in seconds.
        shutdown_timeout: the budget of the ``shutdown()`` run at interpreter exit.
        sample_system: fill ``contextCpuPercentage``/``contextMemoryPercentage`` from a sampler.
        processors: callables run once per event before fan-out; return None to drop it.
        before_send: ``before_send(event, hint) -> event | None``, run once per application
            event after the processors; None drops the event; if it raises, the event goes on.
        sample_rate: the share of application events kept (0.0 to 1.0); metrics and incident
            lifecycle events are never sampled.
        storm_window: seconds of storm control per fingerprint (dedup key, else type + template
            + logger): the first occurrence goes at once, repeats are counted and summed up in a
            digest event when the window ends. 0 turns it off.
        spool: keep events that cannot be delivered now (deadline, open circuit, end of the
            shutdown budget) in a SQLite spool and replay them later; ``spool_path`` implies it.
        spool_path: the spool file (default ``$ALERTKIT_HOME/spool.db``).
        spool_max_events, spool_max_bytes, spool_max_age: the spool's bounds (events, bytes of
            stored envelopes, seconds since capture; default 100,000, 200 MiB, 7 days); beyond
            one, the oldest events are evicted and counted in ``stats()["evicted"]``.
        scrub: mask secret-looking keys and values (passwords, tokens, card numbers, secrets in
            URLs) in everything an event carries; False only for a destination trusted with them.
        denylist: key fragments that mark a secret, replacing the default list
            (``alertkit.policy.scrub.DEFAULT_DENYLIST``).
        extra_keys: fragments added to the denylist.
        allow_keys: key names never masked by key.
        limits: size limits for strings, collections, depth and stack traces
            (``alertkit.policy.limits.Limits()`` by default); what is cut carries a marker.
        on_drop: called as ``on_drop(envelope_or_None, reason)`` for each dropped event.
        max_breadcrumbs: the last log records (and ``alertkit.add_breadcrumb`` calls) of the
            current context that ride along with every error and fatal event, oldest first; 0
            turns breadcrumbs off. See :mod:`alertkit.capture.breadcrumbs`.
        breadcrumb_level: the lowest level of a log record kept as a breadcrumb.
        before_breadcrumb: ``before_breadcrumb(crumb, hint) -> crumb | None``, run on the policy
            thread for each breadcrumb an event takes; None leaves the crumb out.
        register_atexit: run ``shutdown(shutdown_timeout)`` at interpreter exit.
        capture_uncaught: report what no ``except`` caught (:mod:`alertkit.capture.uncaught`):
            True for every part, False for none (the default of a ``Client``; ``alertkit.init``
            turns all on), or a set of the parts ``"excepthook"`` (``sys.excepthook``, a
            ``fatal`` event), ``"threading"`` (``threading.excepthook``), ``"asyncio"`` (the
            running loop's exception handler) and ``"unraisable"`` (``sys.unraisablehook``).
            ``shutdown()`` (or ``uninstall()``) puts the previous hooks back.
        synchronous: deliver on the caller's thread, one attempt per backend with a network
            timeout of at most :data:`SYNC_TIMEOUT`, instead of on background threads; what that
            attempt does not settle is spooled or dropped and counted. None (the default) turns
            it on only where threads cannot run (uWSGI without ``--enable-threads``), and says
            so once on the ``alertkit`` logger.

    Raises:
        TypeError: an unknown option, or a value of the wrong type (the message names it).
        ValueError: a value out of range, or a bad backend URL.
    """

    _metrics: Metrics | None = None

    def __init__(
        self,
        api_key: str | None = None,
        app_version: str = "1.0",
        deployment_stage: str = "development",
        application_sku: str = "",
        tags: Iterable[str] | Mapping[str, Any] = (),
        threads: int = 4,
        connections: int = 4,
        backends: Sequence[str | Backend] | None = None,
        *,
        app_name: str | None = None,
        hostname: str | None = None,
        data_center: str | None = None,
        data_center_region: str | None = None,
        queue_size: int = 10_000,
        batch_size: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        shutdown_timeout: float = 2.0,
        sample_system: bool = True,
        processors: Sequence[Processor] = (),
        before_send: BeforeSendHook | None = None,
        sample_rate: float = 1.0,
        storm_window: float = 60.0,
        spool: bool = False,
        spool_path: str | os.PathLike[str] | None = None,
        spool_max_events: int | None = None,
        spool_max_bytes: int | None = None,
        spool_max_age: float | None = None,
        scrub: bool = True,
        denylist: Iterable[str] | None = None,
        extra_keys: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        limits: Limits | None = None,
        on_drop: DropCallback | None = None,
        register_atexit: bool = True,
        capture_uncaught: bool | Iterable[str] = False,
        max_breadcrumbs: int = 50,
        breadcrumb_level: str | int = "info",
        before_breadcrumb: BeforeBreadcrumb | None = None,
        synchronous: bool | None = None,
    ) -> None:
        self.api_key = text(
            "api_key",
            api_key if api_key is not None else os.environ.get("ALERTKIT_API_KEY"),
            optional=True,
        )
        self.app_version = text("app_version", app_version)
        self.deployment_stage = text("deployment_stage", deployment_stage)
        self.application_sku = text("application_sku", application_sku)
        self.app_name = text("app_name", app_name, optional=True)
        self.data_center = text("data_center", data_center, optional=True)
        self.data_center_region = text("data_center_region", data_center_region, optional=True)
        self.tags = parse_tags(tags)
        self.threads = positive("threads", threads)
        self.connections = positive("connections", connections)
        self.queue_size = positive("queue_size", queue_size)
        self.batch_size = None if batch_size is None else positive("batch_size", batch_size)
        self.timeout = float(positive("timeout", timeout, float))
        self.shutdown_timeout = float(positive("shutdown_timeout", shutdown_timeout, float))
        self.synchronous = _synchronous(synchronous)
        check_hooks(retry, on_drop, processors, before_send)
        check_rates(sample_rate, storm_window)
        uncaught_parts = uncaught.parse_parts(capture_uncaught)
        self.breadcrumbs = Breadcrumbs(max_breadcrumbs, breadcrumb_level, before_breadcrumb)
        self.platform = PlatformInfo.detect(text("hostname", hostname, optional=True))
        self.events = EventFactory(
            api_key=self.api_key,
            app_version=self.app_version,
            deployment_stage=self.deployment_stage,
            application_sku=self.application_sku,
            tags=self.tags,
            platform=self.platform,
            sampler=SystemSampler() if sample_system and not self.synchronous else None,
            data_center=self.data_center,
            data_center_region=self.data_center_region,
        )
        self.backends = make_backends(backends, self._context())
        self.breadcrumbs.read_by(
            (b.sends_breadcrumbs for b in self.backends), processors, before_send, on_drop
        )
        chain = processor_chain(
            sample_rate,
            processors,
            before_send,
            scrub=scrub,
            denylist=denylist,
            extra_keys=extra_keys,
            allow_keys=allow_keys,
            limits=limits,
        )
        self.pipeline = Pipeline(
            self.backends,
            policy=retry or RetryPolicy(),
            queue_size=self.queue_size,
            batch_size=self.batch_size,
            threads=self.threads,
            processors=chain,
            storm=StormControl(float(storm_window)) if storm_window else None,
            spool=open_spool(
                spool,
                spool_path,
                max_events=spool_max_events,
                max_bytes=spool_max_bytes,
                max_age=spool_max_age,
            ),
            on_drop=on_drop,
            synchronous=self.synchronous,
        )
        if type(self).submit_capture is Client.submit_capture:
            # The logging handler's hand-off, one call shorter (every logged event asks); a
            # subclass's own submit_capture stays in place.
            self.submit_capture = self.pipeline.submit  # type: ignore[method-assign]
        _import_for_sending()
        watch_uwsgi_forks()
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False
        self._shut_down = threading.Event()  # set when the first shutdown() has finished
        self._retirer: threading.Thread | None = None
        lifetime.track(self, at_exit=register_atexit)
        if uncaught_parts:
            uncaught.install(self, uncaught_parts)

    def _context(self) -> ClientContext:
        """What the backends learn of the client when they are bound to it."""
        return ClientContext(
            api_key=self.api_key,
            connections=self.connections,
            timeout=min(self.timeout, SYNC_TIMEOUT) if self.synchronous else self.timeout,
            hostname=self.platform.hostname,
            app_name=self.app_name,
            app_version=self.app_version,
            deployment_stage=self.deployment_stage,
        )

    # -- building events -----------------------------------------------------------------------------

    def create_new_app_event(
        self,
        log_level: str = "error",
        classification: str = "issue",
        event_type: str = "unknown",
        event_message: str = "unknown",
        exc_info: Any = False,
    ) -> AppEvent:
        """A new event filled with the client's defaults.

        Args:
            log_level: debug, info, warning, error, fatal (``critical`` is ``fatal``).
            classification: ``issue`` by default; ``log`` for plain logs; or custom.
            event_type: the event's type; with an exception and the default ``"unknown"``, the
                exception's qualified name.
            event_message: likewise ``str(exception)``.
            exc_info: True reads the active exception; a ``(type, value, tb)`` tuple or an
                exception instance is used as is.

        Raises:
            ValueError: unknown ``log_level``.
        """
        level = normalize_level(log_level)
        info = resolve_exc_info(exc_info)
        event = self.events.new(level, classification, event_type, event_message)
        if info is not None:
            self.events.add_exception(event, info)
        return event

    def envelope_for(self, event: AppEvent, **fields: Any) -> Envelope:
        """Wrap an event for the pipeline, with the client's tags and its level number."""
        return self.events.envelope(event, **fields)

    # -- sending ---------------------------------------------------------------------------------

    def log(
        self,
        arg_dict: Mapping[str, Any],
        log_level: str = "error",
        classification: str = "issue",
        exc_info: Any = True,
    ) -> Future[Results]:
        """Send an event built from a dict, Trakerr-style, without waiting.

        The keys ``eventtype``, ``eventmessage``, ``user``, ``session``, ``time`` (operation time
        in ms), ``url``, ``corrid`` and ``device`` fill their wire fields; other keys become the
        event's details. ``exc_info=True`` attaches the active exception, if there is one.

        Raises:
            ValueError: unknown ``log_level`` (a programming error, raised at once).
        """
        level = normalize_level(log_level)
        info = resolve_exc_info(exc_info)
        data = self.events.log_data(arg_dict)  # never raises, whatever the mapping does
        scope = scope_for_log(data, level, info)
        crumbs = self.breadcrumbs.snapshot(LEVEL_NUMBERS[level])
        created = time.time()

        def capture() -> Envelope:
            envelope = self.events.from_log_dict(data, level, classification, info, created)
            self.breadcrumbs.attach(envelope, crumbs)
            return envelope if scope is None else scope.apply(envelope)

        return self._submit(traced(capture, scope), None, scope)

    def send_event(self, event: AppEvent | Envelope, timeout: float | None = None) -> Results:
        """Deliver ``event`` to every backend and wait; returns one final result per backend.

        ``timeout`` bounds the wait (default: until the retry policy settles every backend); a
        backend still working when it runs out is absent from the result.
        """
        # Never held for a scope's escalation: this wait would last until the request ends.
        future = self._send_event(event, None, hold=False)
        try:
            return future.result(timeout)
        except Exception:  # TimeoutError: report what has settled so far
            return {}

    def send_event_async(
        self,
        event: AppEvent | Envelope,
        callback: Callable[[Results], Any] | None = None,
    ) -> Future[Results]:
        """Queue ``event`` for every backend and return at once.

        Returns:
            A future whose result maps each backend's name to its final result (``Delivered``,
            ``Rejected``, ``Dropped`` or ``Skipped``). ``callback``, if given, is called with that
            mapping on a worker thread; an exception in it is logged, never raised.
        """
        return self._send_event(event, callback, hold=True)

    def _send_event(
        self,
        event: AppEvent | Envelope,
        callback: Callable[[Results], Any] | None,
        *,
        hold: bool,
    ) -> Future[Results]:
        if isinstance(event, Envelope):
            envelope = event
        elif isinstance(event, AppEvent):
            envelope = self.envelope_for(event)
        else:
            raise TypeError(f"send_event needs an AppEvent, not {type(event).__name__}")
        scope = scope_for_event(envelope)
        crumbs = self._crumbs_for(envelope)
        if scope is not None:
            tags_win = not isinstance(event, Envelope)  # an Envelope's own tags are per-event
            holder = scope if hold else None
            capture = traced(
                lambda: self.breadcrumbs.attach(scope.apply(envelope, tags_win=tags_win), crumbs),
                scope,
            )
            return self._submit(capture, callback, holder)
        return self._submit(traced(lambda: self.breadcrumbs.attach(envelope, crumbs)), callback)

    def _crumbs_for(self, envelope: Envelope) -> tuple[Entry, ...] | None:
        """The trail an application event takes, unless it carries breadcrumbs already."""
        if envelope.kind != "event" or envelope.breadcrumbs:
            return None
        levelno = envelope.levelno if type(envelope.levelno) is int else 40
        return self.breadcrumbs.snapshot(levelno)

    def acknowledge(self, dedup_key: str) -> Future[Results]:
        """Acknowledge incident ``dedup_key`` on every backend that takes lifecycle events
        (PagerDuty); returns the future of :meth:`send_event_async`."""
        return self.send_event_async(lifecycle_envelope(self, "acknowledge", dedup_key))

    def resolve(self, dedup_key: str) -> Future[Results]:
        """Resolve incident ``dedup_key``; like :meth:`acknowledge`."""
        return self.send_event_async(lifecycle_envelope(self, "resolve", dedup_key))

    def change_event(
        self,
        summary: str,
        *,
        source: str | None = None,
        custom_details: Mapping[str, Any] | None = None,
        links: Sequence[Mapping[str, str]] | None = None,
        timestamp: Any = None,
    ) -> Future[Results]:
        """Send a change event (a deploy ...; see :func:`alertkit.capture.incidents.change_envelope`);
        returns the future like :meth:`acknowledge`."""
        return self.send_event_async(
            change_envelope(
                self,
                summary,
                source=source,
                custom_details=custom_details,
                links=links,
                timestamp=timestamp,
            )
        )

    def scope(
        self,
        tags: Iterable[str] | Mapping[str, Any] | None = None,
        user: str | None = None,
        *,
        escalate_from: str | int | None = None,
    ) -> Scope:
        """A per-request scope: ``with client.scope(tags=..., user=...) as scope:``.

        Events captured inside carry its tags, user and ``alert_id``; ``alertkit.capture.scope``'s
        functions (``add_to_log``, ``escalate`` ...) work on it. With ``escalate_from``, leaving
        the block escalates when the request reached that level. See :mod:`alertkit.capture.scope`.
        """
        return Scope(self, tags=parse_tags(tags or ()), user=user, escalate_from=escalate_from)

    def submit_capture(self, capture: Callable[[], Envelope | None]) -> bool:
        """Queue a capture (a callable run on the policy thread that builds the envelope)."""
        return self.pipeline.submit(capture)

    def enqueue(
        self, capture: Callable[[], Envelope | None], future: Future[Results] | None = None
    ) -> bool:
        """Queue a capture whose results settle ``future``; False (and the future settled with
        the refusal) when the pipeline is full or shut down."""
        return self.pipeline.submit(capture, future)

    def _submit(
        self,
        capture: Callable[[], Envelope | None],
        callback: Callable[[Results], Any] | None,
        scope: ScopeContext | None = None,
    ) -> Future[Results]:
        from concurrent.futures import Future  # imported by _import_for_sending()

        future: Future[Results] = Future()
        if callback is not None:

            def call(done: Future[Results]) -> None:
                with capture_internal_exceptions():
                    callback(done.result())

            future.add_done_callback(call)
        if scope is not None and scope.hold(self, capture, future):
            return future
        self.pipeline.submit(capture, future)
        return future

    # -- lifecycle and visibility ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event given so far has a final result; True if that happened in time."""
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` seconds (default ``shutdown_timeout``), then stop.

        Idempotent and bounded: a hanging destination cannot hold it past the timeout. What could
        not be delivered is counted (``stats()``) and reported in one line on stderr.
        """
        budget = self.shutdown_timeout if timeout is None else max(0.0, float(timeout))
        with self._shutdown_lock:
            first = not self._is_shut_down
            self._is_shut_down = True
        if not first:  # another thread is shutting down (a retiring handler's client, atexit)
            self._shut_down.wait(budget)
            return
        try:
            if self.events.sampler is not None:
                self.events.sampler.stop()
            self.pipeline.shutdown(budget)
        finally:
            self._shut_down.set()
            lifetime.shut_down(self)
            uncaught.uninstall(self)
            retirer = self._retirer
            if retirer is not None and retirer is not threading.current_thread():
                retirer.join(0.1)  # it only waits for this shutdown: it ends right away

    close = shutdown

    def uninstall(self) -> None:
        """Stop reporting uncaught exceptions (``capture_uncaught``) and put back the hooks this
        client's installing replaced, unless another client still listens to them."""
        uncaught.uninstall(self)

    def retire(self) -> None:
        """Shut down once what is queued has its final result, in the background; returns at once.

        For a logging handler's ``close()``, which ``logging.config.dictConfig`` calls while it
        holds the logging lock: waiting there for delivery could wait forever for a worker
        thread that needs that lock. Events keep their full retry policy; at exit, ``atexit``'s
        shutdown ends the wait within the shutdown budget (or a spool keeps them).
        """
        with self._shutdown_lock:
            if self._is_shut_down or self._retirer is not None:
                return
            self._retirer = threading.Thread(
                target=self._retire, name="alertkit-retire", daemon=True
            )
        self._retirer.start()

    def _retire(self) -> None:
        with capture_internal_exceptions():
            self.pipeline.flush(self.pipeline.settle_time())
            self.shutdown()

    @property
    def metrics(self) -> Metrics:
        """Chouette-style metrics (count, gauge, histogram, rate, set, timed) of this client."""
        if self._metrics is None:
            self._metrics = Metrics(self)
        return self._metrics

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-backend counts: enqueued, queued, delivered, retried, rejected, dropped, skipped,
        and the last reason of each."""
        result = self.pipeline.stats()
        lost = self.pipeline.intake_dropped
        if lost:
            for entry in result.values():
                entry["dropped"] += lost
        return result

    def after_fork(self) -> None:
        """In a forked child: new locks, and no retiring thread (the parent's does not exist)."""
        renew_locks(self)
        self._retirer = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        backends = ", ".join(repr(b) for b in self.backends)
        key = "****" if self.api_key else None
        return (
            f"<Client app_version={self.app_version!r} stage={self.deployment_stage!r} "
            f"api_key={key} backends=[{backends}]>"
        )


#: The network timeout in synchronous mode, where each request holds the application's thread.
SYNC_TIMEOUT = 1.0
_said_synchronous = False


def _synchronous(option: bool | None) -> bool:
    """The delivery mode: the option when given, else synchronous only where threads cannot
    run, said once per process (a client per request must not repeat it)."""
    global _said_synchronous
    if option is not None:
        if not isinstance(option, bool):
            raise TypeError(f"synchronous must be True, False or None, not {option!r}")
        return option
    reason = threads_unavailable()
    if reason is None:
        return False
    if not _said_synchronous:
        _said_synchronous = True
        logging.getLogger("alertkit").warning(
            "alertkit: %s, so background threads cannot run: events are delivered "
            "synchronously (one attempt, %.1f s timeout, then spooled or dropped and counted). "
            "Add --enable-threads to deliver in the background.",
            reason,
            SYNC_TIMEOUT,
        )
    return True


def _import_for_sending() -> None:
    """Import now what sending imports on the caller's thread (kept out of ``import alertkit``
    for its start-up time): a ``fork()`` while another thread is in the middle of that first
    import would leave its lock held in the child."""
    import concurrent.futures  # noqa: F401


atexit.register(lifetime.shutdown_all_at_exit)
at_fork_in_child(lifetime.after_fork_in_child)
