"""What ``alertkit relay status`` shows, read from Redis alone (no relay need be running).

Per consumer group: its consumers, pending entries (delivered to a relay, not yet acknowledged),
the lag (entries not yet read by the group), and the entries delivered per destination; for the
stream: its length and its dead letters. Everything comes from ``XINFO`` and the relays' own
counters (``<stream>:delivered``), so the numbers are the fleet's, not one relay's; the active
silences with what each muted so far come from :mod:`alertkit.relay.silences`.
"""

from __future__ import annotations

import time
from typing import Any

from alertkit.backends.redis_stream import RedisStreamBackend
from alertkit.relay.keys import state_key, stream_key
from alertkit.relay.silences import Silences, silence_rows, silence_table

#: The most entries counted one by one for the lag on a Redis without ``XINFO`` lag (< 7.0).
_LAG_SCAN = 100_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def relay_status(source: RedisStreamBackend) -> dict[str, Any]:
    """The status of the stream ``source`` writes to, as plain data (``--json`` prints it).

    Works on a single server and on any node of a Redis Cluster (every key is of the stream's
    hash tag, so one node answers); ``cluster`` then names the stream's slot and the master that
    serves it now (None on a single server).

    Raises:
        redis.RedisError: Redis cannot be reached (or one of ``source.errors``).
    """
    key = stream_key(source.stream)
    conn: Any = source.client()
    try:
        length = int(conn.xlen(key))
        dead = int(conn.xlen(state_key(source.stream, "dead")))
        delivered = {
            _text(k): int(v) for k, v in conn.hgetall(state_key(source.stream, "delivered")).items()
        }
        groups = []
        for info in conn.xinfo_groups(key) if length or conn.exists(key) else ():
            name = _text(info["name"])
            lag = info.get("lag")
            if lag is None:  # Redis < 7: count what follows the group's last delivered id
                last = _text(info["last-delivered-id"])
                lag = len(conn.xrange(key, min=f"({last}", count=_LAG_SCAN))
            consumers = [
                {
                    "name": _text(c["name"]),
                    "pending": int(c["pending"]),
                    "idle_seconds": round(int(c["idle"]) / 1000, 1),
                }
                for c in conn.xinfo_consumers(key, name)
            ]
            prefix = f"{name}/"
            groups.append(
                {
                    "name": name,
                    "pending": int(info["pending"]),
                    "lag": int(lag),
                    "consumers": consumers,
                    "delivered": {
                        k[len(prefix) :]: v for k, v in delivered.items() if k.startswith(prefix)
                    },
                }
            )
        silences = silence_rows(Silences(conn, source.stream))
        cluster = _cluster(conn, key) if source.connector.cluster else None
    finally:
        conn.close()
    return {
        "stream": key,
        "server": source.mask(source.describe()),
        "length": length,
        "dead_letters": dead,
        "cluster": cluster,
        "groups": groups,
        "silences": silences,
        "time": time.time(),
    }


def _cluster(conn: Any, key: str) -> dict[str, Any]:
    """The stream's slot and the master serving it, from the cluster client's view of the slots."""
    client = conn.get()
    node = client.get_node_from_key(key)
    return {"slot": int(client.keyslot(key)), "master": f"{node.host}:{node.port}"}


def status_table(status: dict[str, Any]) -> str:
    """The status as the table ``alertkit relay status`` prints."""
    lines = [
        f"stream {status['stream']} on {status['server']}: {status['length']} entries, "
        f"{status['dead_letters']} dead letters ({status['stream']}:dead)"
    ]
    if status.get("cluster"):
        cluster = status["cluster"]
        lines.append(f"Redis Cluster: slot {cluster['slot']}, served by {cluster['master']}")
    if not status["groups"]:
        lines.append("no consumer group yet (no relay has started on this stream)")
    for group in status["groups"]:
        lines.append("")
        lines.append(
            f"group {group['name']}: pending {group['pending']}, lag {group['lag']} "
            f"(entries not yet read)"
        )
        lines.append(f"  {'consumer':<40} {'pending':>8} {'idle':>10}")
        for consumer in group["consumers"]:
            lines.append(
                f"  {consumer['name']:<40} {consumer['pending']:>8} "
                f"{consumer['idle_seconds']:>9.1f}s"
            )
        if group["delivered"]:
            lines.append(f"  {'destination':<40} {'delivered':>8}")
            for name, count in sorted(group["delivered"].items()):
                lines.append(f"  {name:<40} {count:>8}")
    lines.append("")
    if status["silences"]:
        lines.append(f"active silences ({status['stream']}:silenced keeps what they muted)")
        lines.extend("  " + line for line in silence_table(status["silences"]).splitlines())
    else:
        lines.append("no active silences")
    return "\n".join(lines)
