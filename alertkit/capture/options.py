"""Checking ``Client`` options: a bad value raises at construction, naming the option.

Config errors are loud (a typo must not silently turn alerting off); these helpers keep
``Client.__init__`` to what it builds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from alertkit.backends.base import Backend, ClientContext
from alertkit.backends.registry import create_backend
from alertkit.model.retry import RetryPolicy
from alertkit.policy import Processor
from alertkit.policy.filters import BeforeSend, BeforeSendHook, Sampler, expand_fingerprint
from alertkit.policy.scrub import default_processors

if TYPE_CHECKING:
    from alertkit.delivery.pipeline import DropCallback
    from alertkit.spool.store import Spool


def positive(name: str, value: Any, kind: type = int) -> Any:
    """``value`` if it is a positive whole number (``kind`` int) or number (float)."""
    if isinstance(value, bool) or not isinstance(value, kind if kind is int else (int, float)):
        raise TypeError(
            f"{name} must be a {'whole number' if kind is int else 'number'}, "
            f"not {type(value).__name__}"
        )
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


def text(name: str, value: Any, *, optional: bool = False) -> Any:
    """``value`` if it is a string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return value


def parse_tags(tags: Iterable[str] | Mapping[str, Any]) -> dict[str, str]:
    """Tags as a mapping, from ``"key:value"`` strings or a mapping."""
    if isinstance(tags, str):
        raise TypeError("tags must be a list of 'key:value' strings or a mapping, not a string")
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    parsed: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"tags: every tag must be a string, got {type(tag).__name__}")
        key, _, value = tag.partition(":")
        parsed[key] = value
    return parsed


def check_hooks(
    retry: RetryPolicy | None,
    on_drop: DropCallback | None,
    processors: Sequence[Processor],
    before_send: BeforeSendHook | None,
) -> None:
    """The retry policy is a RetryPolicy and every hook is callable."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    if on_drop is not None and not callable(on_drop):
        raise TypeError("on_drop must be callable")
    for processor in processors:
        if not callable(processor):
            raise TypeError(f"processors: {processor!r} is not callable")
    if before_send is not None and not callable(before_send):
        raise TypeError("before_send must be callable")


def check_rates(sample_rate: Any, storm_window: Any) -> None:
    """``sample_rate`` is a share (0 to 1) and ``storm_window`` a number of seconds (0 or more)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float):
        raise TypeError(f"sample_rate must be a number, not {type(sample_rate).__name__}")
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
    if isinstance(storm_window, bool) or not isinstance(storm_window, int | float):
        raise TypeError(f"storm_window must be a number, not {type(storm_window).__name__}")
    if storm_window < 0:
        raise ValueError(f"storm_window must not be negative, got {storm_window!r}")


def processor_chain(
    sample_rate: float,
    processors: Sequence[Processor],
    before_send: BeforeSendHook | None,
    **scrub_options: Any,
) -> list[Processor]:
    """Sampling, the user's processors and ``before_send``, the fingerprint's ``"{{ default }}"``
    expanded, then scrubbing and limits last, so that whatever the user's hooks add is scrubbed
    and bounded too."""
    chain: list[Processor] = []
    if sample_rate < 1.0:
        chain.append(Sampler(float(sample_rate)))
    chain.extend(processors)
    if before_send is not None:
        chain.append(BeforeSend(before_send))
    chain.append(expand_fingerprint)
    chain.extend(default_processors(**scrub_options))
    return chain


def open_spool(spool: bool, path: str | os.PathLike[str] | None, **bounds: Any) -> Spool | None:
    """The spool the options ask for, opened now (a bad path is a construction error), or None.

    ``bounds``: ``max_events``, ``max_bytes``, ``max_age``; None keeps the spool's default.
    """
    if not isinstance(spool, bool):
        raise TypeError(f"spool must be True or False, not {type(spool).__name__}")
    given = {name: value for name, value in bounds.items() if value is not None}
    for name, value in given.items():
        positive(f"spool_{name}", value, float if name == "max_age" else int)
    if not spool and path is None:
        if given:
            raise ValueError(
                f"spool_{next(iter(given))} is set but the spool is off: "
                "pass spool=True or spool_path"
            )
        return None

    from alertkit.spool.store import Spool  # sqlite3: only for a client that spools

    try:
        opened = Spool(path, **given)
        opened.counts()  # open the file now: a bad path is a construction error
    except Exception as exc:
        raise ValueError(f"spool_path: cannot open the spool: {exc}") from exc
    return opened


def make_backends(specs: Sequence[str | Backend] | None, context: ClientContext) -> list[Backend]:
    """The backends from URLs or objects (env ``ALERTKIT_BACKENDS``, else the local inbox),
    each bound to the client's context under a unique name (``http``, ``http-2`` ...)."""
    if specs is None:
        env = os.environ.get("ALERTKIT_BACKENDS", "").strip()
        specs = [s.strip() for s in env.split(",") if s.strip()] if env else ["local://"]
    if isinstance(specs, str | bytes) or not isinstance(specs, Sequence | set | frozenset):
        raise TypeError("backends must be a list of URL strings or backend objects")
    made: list[Backend] = []
    names: set[str] = set()
    for spec in specs:
        backend = create_backend(spec)
        base, n = backend.name, 1
        while backend.name in names:
            n += 1
            backend.name = f"{base}-{n}"
        names.add(backend.name)
        backend.bind(context)
        made.append(backend)
    if not made:
        raise ValueError("backends: the list is empty; leave it out to use the local inbox")
    return made
