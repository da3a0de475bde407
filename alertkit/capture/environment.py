"""What the platform says about where the application runs: the event context defaults.

Read once per client from :mod:`platform` exactly as Trakerr's client does (WIRE.md section 1), plus a
CPU/memory sampler. Unlike Trakerr's, the sampler thread is a daemon, starts only when the first event
asks for a reading, and stops at ``shutdown()``, so it never keeps a process alive. psutil is
imported when the sampler is made, never on its thread (an import in progress at a ``fork()`` leaves
its lock held in the child), and a forked child gets a fresh lock and thread.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import msgspec

from alertkit._forking import at_fork_in_child


class PlatformInfo(msgspec.Struct, frozen=True):
    """The context strings every event carries."""

    language: str
    interpreter: str
    interpreter_version: str
    hostname: str
    os_name: str
    os_version: str

    @classmethod
    def detect(cls, hostname: str | None = None) -> PlatformInfo:
        import platform

        system = platform.system()
        if system == "Windows":
            os_name = f"{system} {platform.release()}"
            os_version = platform.version()
        else:
            os_name = system
            os_version = platform.release()
        return cls(
            language="Python",
            interpreter=platform.python_implementation(),
            interpreter_version=platform.python_version(),
            hostname=hostname or platform.node(),
            os_name=os_name,
            os_version=os_version,
        )


def threads_unavailable() -> str | None:
    """Why background threads cannot run in this process, or None when they can.

    Under uWSGI without ``--enable-threads`` (or ``--threads``), Python threads get no time
    between requests: a delivery thread would hold events until the process dies. Read from the
    ``uwsgi`` module uWSGI provides (its ``has_threads`` where it has one, else the options in
    ``uwsgi.opt``); no other server is known to stop threads.
    """
    import sys

    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return None
    opt = getattr(uwsgi, "opt", None)
    opt = opt if isinstance(opt, dict) else {}
    if getattr(uwsgi, "has_threads", 0) or "threads" in opt or _truthy(opt.get("enable-threads")):
        return None
    return "uWSGI runs without --enable-threads"


def _truthy(value: Any) -> bool:
    """A uWSGI option's value as set in ``uwsgi.opt`` (True, bytes, or a list when repeated)."""
    if isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return value.strip().lower() not in {"", "0", "false", "no", "off"}
    return bool(value)


class SystemSampler:
    """Samples system CPU and memory percent once a second on a daemon thread.

    Uses psutil when it is installed (extra ``system``), else ``/proc`` on Linux; elsewhere the
    readings stay None and the event fields are left out.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.cpu_percent: float | None = None
        self.memory_percent: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._last_cpu: tuple[float, float] | None = None
        self._psutil = _import_psutil()
        _samplers.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and its lock may have been held."""
        self._lock = threading.Lock()
        self._stop = _renewed(self._stop)
        self._thread = None

    def ensure_started(self) -> None:
        """Start the thread on first use (and again in a forked child)."""
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._stop.is_set():
                return
            self._pid = os.getpid()
            self._sample()
            thread = threading.Thread(target=self._run, name="alertkit-sampler", daemon=True)
            thread.start()
            self._thread = thread

    def stop(self, timeout: float = 0.1) -> None:
        """Stop sampling and wait up to ``timeout`` for the thread (it wakes at once)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        psutil = self._psutil
        if psutil is not None:
            try:
                self.cpu_percent = float(psutil.cpu_percent(interval=None))
                self.memory_percent = float(psutil.virtual_memory().percent)
            except Exception:  # psutil failing on an odd platform must not break events
                pass
            return
        self._sample_proc()

    def _sample_proc(self) -> None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [float(v) for v in stat.readline().split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
            total = sum(fields)
            if self._last_cpu is not None:
                d_total = total - self._last_cpu[0]
                d_idle = idle - self._last_cpu[1]
                if d_total > 0:
                    self.cpu_percent = round(100.0 * (1.0 - d_idle / d_total), 1)
            self._last_cpu = (total, idle)
            meminfo: dict[str, float] = {}
            with open("/proc/meminfo", encoding="ascii") as mem:
                for line in mem:
                    key, _, rest = line.partition(":")
                    if key in ("MemTotal", "MemAvailable"):
                        meminfo[key] = float(rest.split()[0])
            if meminfo.get("MemTotal"):
                used = meminfo["MemTotal"] - meminfo.get("MemAvailable", 0.0)
                self.memory_percent = round(100.0 * used / meminfo["MemTotal"], 1)
        except (OSError, ValueError, IndexError):
            return


def _import_psutil() -> Any:
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def _renewed(event: threading.Event) -> threading.Event:
    fresh = threading.Event()
    if event.is_set():
        fresh.set()
    return fresh


_samplers: weakref.WeakSet[SystemSampler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sampler in list(_samplers):
        sampler._after_fork()


at_fork_in_child(_after_fork_in_child)
