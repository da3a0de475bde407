"""Redis Cluster for the stream backend and the relays: found by asking the node named in the URL,
reached with redis-py's ``RedisCluster``.

A ``redis-stream://`` URL names one node. With ``cluster="auto"`` (the default) the first use asks
that node once (``INFO cluster``: ``cluster_enabled``) and remembers the answer; ``"yes"`` and
``"no"`` skip the question. Nothing is asked at construction, so an application or a relay starts
while Redis is down and waits the outage out like any other.

Every key of a stream shares its hash tag (:mod:`alertkit.relay.keys`), so one node serves all of a
stream's transactions and scripts. :meth:`Connector.pool_for` gives that node's pool for the
backend's packed ``MULTI``/``EXEC``; after an error (the node died, ``MOVED`` after a failover or a
resharding) :meth:`Connector.failed` asks the cluster for its slots again, and the caller's own
retry (the worker's policy, the relay's loop) does the rest. redis-py's cluster client retries a
command at most :data:`CLUSTER_RETRIES` times with short backoffs, within the URL's timeouts.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable
from typing import Any

#: The values of the ``cluster`` option.
MODES = ("auto", "yes", "no")
#: redis-py's own retries of one cluster command (connection lost, slot moving), short backoffs.
CLUSTER_RETRIES = 2


def redis_errors(redis: Any) -> tuple[type[BaseException], ...]:
    """What an unreachable or failing-over Redis raises: redis-py's errors, its cluster errors
    (which are not ``RedisError``: an uncovered slot, an unreachable cluster), socket errors."""
    return (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


def client_kwargs(pool_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``redis.Redis`` keyword arguments from a pool's (TLS is ``ssl=True`` there)."""
    options = dict(pool_kwargs)
    connection_class = options.pop("connection_class", None)
    if connection_class is not None:
        options["ssl"] = True
    return options


def cluster_kwargs(pool_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``redis.RedisCluster`` keyword arguments from a pool's: no database, the cluster client's
    own bounded retry, and a client that starts while some slots are failing over."""
    from redis.backoff import ExponentialBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    options = {k: v for k, v in client_kwargs(pool_kwargs).items() if k not in ("db", "retry")}
    options["require_full_coverage"] = False
    if "retry" in inspect.signature(RedisCluster.__init__).parameters:
        options["retry"] = Retry(ExponentialBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES)
    else:  # redis-py < 4.6
        options["cluster_error_retry_attempts"] = CLUSTER_RETRIES
    return options


def is_cluster(pool_kwargs: dict[str, Any]) -> bool:
    """Whether the node answers ``cluster_enabled:1`` to ``INFO cluster`` (one round trip).

    Raises:
        redis.RedisError: the node cannot be reached.
    """
    import redis

    probe = {**client_kwargs(pool_kwargs), "db": 0, "max_connections": 1}
    conn = redis.Redis(**probe)
    try:
        info = conn.info("cluster")
    except redis.ResponseError:  # INFO refused (an ACL, a renamed command): not a cluster we see
        return False
    finally:
        conn.close()
    return str(info.get("cluster_enabled", 0)) == "1"


class LazyRedis:
    """A redis-py client made on first use: ``redis.Redis``, or ``redis.RedisCluster`` on a cluster.

    Commands are redis-py's own (attribute access makes the client), so a Redis that cannot be
    reached fails the first command, which every caller handles, instead of the construction.
    """

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The client, made now if need be (a cluster client reads the slots: I/O)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connector.make_client()
                client = self._client
        return client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not made yet (copy, pickle): never a command
            raise AttributeError(name)
        return getattr(self.get(), name)

    def register_script(self, script: str) -> Any:
        """A Lua script bound to this client, made without I/O (loaded on its first call)."""
        from redis.commands.core import Script

        client: Any = self  # Script asks only get_encoder() now, and commands when it runs
        return Script(client, script)

    def get_encoder(self) -> Any:
        """The encoder a script's text is hashed with: redis-py's default, without I/O."""
        import redis

        return redis.Redis().get_encoder()  # a client that never connects: no I/O

    def for_key(self, key: str) -> Any:
        """A client of the node serving ``key`` (itself on a single server), for a ``MULTI``/
        ``EXEC`` pipeline over keys of one hash tag on any redis-py version."""
        client = self.get()
        if not self._connector.cluster:
            return client
        return client.get_redis_connection(client.get_node_from_key(key))

    def failed(self) -> None:
        """After an error: on a cluster, read the slots again (a failover moves them)."""
        client = self._client
        if client is not None and self._connector.cluster:
            self._connector.refresh(client)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class Connector:
    """How one Redis URL is reached: a single server, or the cluster its node belongs to.

    Args:
        pool_kwargs: redis-py pool keyword arguments of the node (timeouts, TLS, credentials).
        mode: ``auto`` (ask the node on first use), ``yes`` or ``no``.
        label: starts the message of an error (the backend's scheme).
    """

    def __init__(self, pool_kwargs: dict[str, Any], mode: str, label: str) -> None:
        self.pool_kwargs = pool_kwargs
        self.mode = mode
        self.label = label
        self._cluster: bool | None = {"yes": True, "no": False}.get(mode)
        self._router: Any = None  # the backend's own cluster client, for slots and pools
        self._lock = threading.Lock()

    @property
    def cluster(self) -> bool:
        """Whether the URL names a cluster node (asked once in ``auto`` mode).

        Raises:
            redis.RedisError: ``auto`` and the node cannot be reached (asked again next time).
        """
        if self._cluster is None:
            with self._lock:
                if self._cluster is None:
                    self._cluster = is_cluster(self.pool_kwargs)
        return self._cluster

    def make_client(self) -> Any:
        """A new ``redis.Redis`` or ``redis.RedisCluster`` (I/O on a cluster: its slots)."""
        import redis

        if not self.cluster:
            return redis.Redis(**client_kwargs(self.pool_kwargs))
        if self.pool_kwargs.get("db"):
            raise redis.exceptions.RedisClusterException(
                f"{self.label}: a Redis Cluster has only database 0; the URL names "
                f"/{self.pool_kwargs['db']}"
            )
        return redis.RedisCluster(**cluster_kwargs(self.pool_kwargs))

    def client(self) -> LazyRedis:
        """A client of its own (its own connections) for a relay's consumer, state or status."""
        return LazyRedis(self)

    def pool_for(self, key: str, single: Callable[[], Any]) -> tuple[Any, int]:
        """``(pool, replicas)``: the pool that serves ``key`` and how many replicas its master had
        at the last look at the slots; ``single()`` gives the pool of a single server (0 replicas).
        """
        if not self.cluster:
            return single(), 0
        router = self._router
        if router is None:
            with self._lock:
                if self._router is None:
                    self._router = self.make_client()
                router = self._router
        slot = router.keyslot(key)
        nodes = router.nodes_manager.slots_cache.get(slot) or ()
        node = router.get_node_from_key(key)  # raises when the slot is not covered
        return router.get_redis_connection(node).connection_pool, max(0, len(nodes) - 1)

    def failed(self) -> None:
        """After an error on :meth:`pool_for`'s pool: read the cluster's slots again."""
        if self._cluster and self._router is not None:
            self.refresh(self._router)

    @staticmethod
    def refresh(client: Any) -> None:
        """Read the slots again (bounded by the timeouts); errors wait for the next attempt."""
        import redis

        with contextlib.suppress(*redis_errors(redis)):
            client.nodes_manager.initialize()

    def close(self) -> None:
        with self._lock:
            router, self._router = self._router, None
        if router is not None:
            router.close()
