"""Redis key names of one event stream and its relay state, all sharing one hash tag.

Redis Cluster serves a multi-key command or Lua script only when its keys live in one slot; the
braces make every key of a stream hash like the stream itself (``{alertkit:events}:dead``).
"""

from __future__ import annotations


def stream_key(stream: str) -> str:
    """The stream's own key: the name as given when it already has a hash tag, else braced."""
    return stream if "{" in stream else "{" + stream + "}"


def state_key(stream: str, suffix: str) -> str:
    """A key of the stream's state (``dead``, ``silenced``, ``silences``, ``storm:...``, ``rate:...``)."""
    return f"{stream_key(stream)}:{suffix}"
