"""Policy: what happens to each event before fan-out, each step a processor of the envelope.

Sampling, ``before_send`` and the fingerprint's ``"{{ default }}"``
(:mod:`~alertkit.policy.filters`), secrets masked
(:mod:`~alertkit.policy.scrub`), sizes bounded (:mod:`~alertkit.policy.limits`), repeats folded
into digests (:mod:`~alertkit.policy.storm`). The delivery pipeline runs them in that order on its
policy thread.
"""

from __future__ import annotations

from collections.abc import Callable

from alertkit.model.event import Envelope

#: One policy step: the envelope to send on (the same object when nothing changes), or None to
#: filter the event out.
Processor = Callable[[Envelope], "Envelope | None"]

__all__ = ["Processor"]
