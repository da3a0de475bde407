"""What the Redis backends share: the URL, the checked connection options, the pool, and one
round trip per batch.

:class:`RedisConnected` is the base of :class:`~alertkit.backends.redis.RedisBackend` (Chouette
queues) and :class:`~alertkit.backends.redis_stream.RedisStreamBackend` (an event stream): both
speak to one Redis the same way, with the password masked and no retries inside redis-py (the
worker owns retry and backoff).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, ClassVar, TypedDict
from urllib.parse import SplitResult, unquote, urlsplit

from alertkit.backends._options import read_options
from alertkit.backends._redact import masked_url
from alertkit.backends.base import MASK, BaseBackend
from alertkit.model.errors import ConfigError, MissingDependency

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6379

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"
_ENCODE = " (a password with / ? # or @ in it must be percent-encoded: %2F %3F %23 %40)"


def command(name: bytes, key: bytes, pairs: list[bytes]) -> bytes:
    """One Redis command in the wire protocol (RESP): ``name key`` and the packed argument pairs."""
    head = b"*%d\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
        2 + 2 * len(pairs),
        len(name),
        name,
        len(key),
        key,
    )
    return head + b"".join(pairs)


def pack(*arguments: bytes) -> bytes:
    """A whole command in RESP from its arguments."""
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        parts.append(b"$%d\r\n%b\r\n" % (len(argument), argument))
    return b"".join(parts)


def _option_names(query: str) -> str:
    return ", ".join(sorted({piece.partition("=")[0] for piece in query.split("&")}))


def parse_redis_url(
    url: str | None, label: str, schemes: tuple[str, str], owner: str
) -> tuple[bool, str, int, int, str | None, str | None]:
    """``(tls, host, port, db, username, password)`` of a Redis URL; no host: the environment.

    ``schemes`` is (plain, TLS); ``label`` starts every error, ``owner`` names the class whose
    ``from_url`` reads query options.
    """
    plain, secure = schemes
    try:
        parts = urlsplit(url if url is not None else f"{plain}://")
    except ValueError:  # its message may quote the host, where a misplaced password can be
        raise ConfigError(f"{label}: malformed URL {masked_url(url)}{_ENCODE}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ConfigError(
            f"{label}: the URL must start with {plain}:// or {secure}://, got {masked_url(url)}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"{label}: the port in {masked_url(url)} is not a number{_ENCODE}"
        ) from None
    host = parts.hostname
    if not host:
        host = os.environ.get("REDIS_HOST") or DEFAULT_HOST
        env_port = os.environ.get("REDIS_PORT")
        if port is None and env_port:
            try:
                port = int(env_port)
            except ValueError:
                raise ConfigError(f"{label}: REDIS_PORT={env_port!r} is not a number") from None
    if parts.query:
        raise ConfigError(
            f"{label}: URL options ({_option_names(parts.query)}) are read by {owner}.from_url "
            f"and backend URL strings; pass them as keywords to {owner}()"
        )
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(
            f"{label}: the database (the path) in {masked_url(url)} must be a number{_ENCODE}"
        )
    return (
        scheme == secure,
        host,
        port or DEFAULT_PORT,
        int(path) if path else 0,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


class RedisOptions(TypedDict, total=False):
    """The connection options every Redis backend takes (see :class:`RedisConnected`)."""

    password: str | None
    db: int | None
    socket_timeout: float
    connect_timeout: float | None
    max_connections: int
    ssl_ca_certs: str | None
    verify: bool
    name: str | None
    min_level: str | int | None


class RedisConnected(BaseBackend):
    """A backend that writes to one Redis: checked options, a pool, one round trip per batch.

    Args:
        url: ``SCHEME://[[user]:password@]host[:port][/db]`` (the TLS scheme for TLS). Without a
            host, ``REDIS_HOST`` and ``REDIS_PORT``, else ``127.0.0.1:6379``.
        password: overrides the URL's password.
        db: overrides the URL's database number.
        socket_timeout: seconds to wait on a Redis reply before the batch is retried later.
        connect_timeout: seconds to wait for a connection; default ``socket_timeout``.
        max_connections: size of the connection pool.
        ssl_ca_certs: a CA bundle for the TLS scheme.
        verify: verify the server certificate under TLS (keep it on outside tests).

    Raises:
        ConfigError: a malformed URL or option.
        MissingDependency: redis-py is not installed (``pip install 'alertkit[redis]'``).
    """

    secret_fields = ("password",)
    #: (plain, TLS) URL schemes.
    url_schemes: ClassVar[tuple[str, str]] = ("redis", "rediss")
    #: The URL options every Redis backend reads (``from_url``), by kind.
    _URL_TEXT: ClassVar[tuple[str, ...]] = ("ssl_ca_certs",)
    _URL_NUMBER: ClassVar[tuple[str, ...]] = ("socket_timeout", "connect_timeout")
    _URL_COUNT: ClassVar[tuple[str, ...]] = ("max_connections", "db")

    def __init__(
        self,
        url: str | None = None,
        *,
        password: str | None = None,
        db: int | None = None,
        socket_timeout: float = 5.0,
        connect_timeout: float | None = None,
        max_connections: int = 4,
        ssl_ca_certs: str | None = None,
        verify: bool = True,
        name: str | None = None,
        min_level: str | int | None = None,
    ) -> None:
        super().__init__(name=name or self.scheme, min_level=min_level)
        label = self.scheme
        try:
            import redis
        except ImportError:
            raise MissingDependency(label, "redis", "redis") from None
        self._redis_module = redis
        self.tls, self.host, self.port, self.db, self.username, self.password = parse_redis_url(
            url, label, self.url_schemes, type(self).__name__
        )
        if password is not None:
            self.password = password
        if db is not None:
            self.db = db
        if isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0:
            raise ConfigError(f"{label}: db must be a whole number >= 0, got {self.db!r}")
        for option, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ConfigError(f"{label}: {option} must be a positive number, got {value!r}")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ConfigError(
                f"{label}: max_connections must be at least 1, got {max_connections!r}"
            )
        if ssl_ca_certs is not None and not self.tls:
            raise ConfigError(f"{label}: ssl_ca_certs needs a {self.url_schemes[1]}:// URL")
        self.socket_timeout = float(socket_timeout)
        self.connect_timeout = float(connect_timeout or socket_timeout)
        self.max_connections = max_connections
        self.ssl_ca_certs = ssl_ca_certs
        self.verify = verify

    def _open_pool(self) -> None:
        """Make the pool; called by a subclass once its own options are checked."""
        self._pool = self._make_pool()
        # redis-py < 5.3 needs a command name to hand out a connection; later ones warn about it.
        parameter = inspect.signature(self._pool.get_connection).parameters.get("command_name")
        self._pool_wants_name = parameter is not None and parameter.default is parameter.empty

    @classmethod
    def _url_options(
        cls, parts: SplitResult, query: dict[str, str], **more: tuple[str, ...]
    ) -> dict[str, Any]:
        """The keyword arguments of a URL: the shared options plus ``more`` (by kind)."""
        options = read_options(
            cls.scheme,
            query,
            text=(*cls._URL_TEXT, *more.get("text", ())),
            number=(*cls._URL_NUMBER, *more.get("number", ())),
            count=(*cls._URL_COUNT, *more.get("count", ())),
            flag=("verify", *more.get("flag", ())),
        )
        options["url"] = parts._replace(query="", fragment="").geturl()
        return options

    def connection_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments for this server (a pool or a ``redis.Redis``)."""
        redis = self._redis_module
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "max_connections": self.max_connections,
            # No retries inside redis-py: the worker owns retry and backoff, so a dead Redis
            # costs one failed attempt, not redis-py's own sleeps on a delivery thread.
            "retry": Retry(NoBackoff(), 0),
            "client_name": "alertkit",
        }
        if self.tls:
            kwargs["connection_class"] = redis.SSLConnection
            kwargs["ssl_cert_reqs"] = "required" if self.verify else "none"
            kwargs["ssl_check_hostname"] = self.verify
            if self.ssl_ca_certs:
                kwargs["ssl_ca_certs"] = self.ssl_ca_certs
        return kwargs

    def _make_pool(self) -> Any:
        return self._redis_module.ConnectionPool(**self.connection_kwargs())

    def _failure_reason(self, exc: BaseException) -> str:
        return self.mask(f"{self.scheme} {self.host}:{self.port}: {type(exc).__name__}: {exc}")

    def _transaction(
        self, commands: list[bytes], pool: Any = None, after: bytes = b""
    ) -> tuple[list[Any], Any]:
        """Send MULTI, the commands and EXEC (then ``after``, one command outside the
        transaction) in one write and read the replies: one round trip.

        The commands are packed by the caller rather than by redis-py, whose per-argument
        packing cost more than everything else together for a batch of 500 (about 2,000
        arguments). ``pool`` is the pool of the node to ask (default this backend's). Returns
        the replies of the commands and the reply of ``after`` (None without it).

        Raises:
            redis.RedisError: connection, timeout, authentication, or an error reply.
            OSError: a socket error redis-py did not wrap.
        """
        payload = b"".join([_MULTI, *commands, _EXEC, after])
        pool = self._pool if pool is None else pool
        conn = pool.get_connection("MULTI") if self._pool_wants_name else pool.get_connection()
        try:
            conn.send_packed_command([payload])
            for _ in range(len(commands) + 1):  # +OK for MULTI, +QUEUED for each command
                conn.read_response()
            results = conn.read_response()
            last = conn.read_response() if after else None
        except BaseException:
            conn.disconnect()  # the replies may be out of step now: never reuse the connection
            raise
        finally:
            pool.release(conn)
        if results is None:
            raise self._redis_module.ResponseError("EXEC: the transaction was aborted")
        for result in results:
            if isinstance(result, Exception):
                raise result
        return list(results), last

    def describe(self) -> str:
        scheme = self.url_schemes[1] if self.tls else self.url_schemes[0]
        user = self.username or ""
        auth = f"{user}:{MASK}@" if self.password else (f"{user}@" if user else "")
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def _close(self) -> None:
        self._pool.disconnect()
