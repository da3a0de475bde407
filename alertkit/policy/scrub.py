"""Secrets out of events before they leave the process: the :class:`Scrubber` processor.

Runs once per event on the policy thread, before fan-out, so every backend sees the same scrubbed
event. Two kinds of rules:

* **Keys.** A value stored under a secret-looking key (:data:`DEFAULT_DENYLIST`) is replaced by
  the mask, whatever it holds, at any depth of ``details``, ``payload``, the scope's request log,
  tags and URL query strings. Fragments of five or more characters match anywhere in the key, with
  case and the separators ``_ - . space`` ignored (``api_key`` matches ``X-Api-Key`` and
  ``apiKey``); shorter ones (``pwd``, ``pan``, ``ssn``, ``auth`` ...) must be a whole word of the
  key (``card_pan``, ``mysqlPwd``), so ``company`` or ``author`` keep their values.
* **Values.** Inside every string the scrubber reaches (details, messages, tracebacks, custom
  data, URLs): Luhn-valid card numbers, ``Bearer``/``Basic`` credentials, JWTs, PEM private
  keys, passwords in URLs (``https://user:pass@host``), secret query parameters of every http(s)
  URL in the text, ``Authorization``/``Cookie`` headers anywhere in a line, and every pair whose
  name is secret-looking, whatever precedes it: ``key=value``, ``key: value``, ``"key": "value"``
  (also JSON escaped in a string), ``--key value``, ``<key>value</key>``.

None and bools under a secret key are kept (they hold no secret and say something, e.g.
``has_password: False``). In the request log the names of operations
(``add_to_log("auth_service", ...)``) are not judged as keys; what each entry holds is.

The limits on sizes are a separate processor, :class:`~alertkit.policy.limits.Limits`;
:func:`default_processors` puts both in the right order.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from alertkit.guard import report_internal_error
from alertkit.model.event import AppEvent, CustomData, Envelope, InnerStackTrace
from alertkit.model.requestlog import SECTIONS
from alertkit.model.stacktrace import safe_str
from alertkit.model.values import KnownObjects, clip, safe_repr
from alertkit.policy import Processor
from alertkit.policy.limits import Limits

__all__ = ["DEFAULT_DENYLIST", "MASK", "Limits", "Scrubber", "default_processors"]

#: What a secret is replaced with.
MASK = "[Filtered]"

#: Key fragments that mark a value as secret (see the module docs for how they match).
DEFAULT_DENYLIST: tuple[str, ...] = (
    # passwords and keys
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "privatekey",
    "signing_key",
    "credential",
    "auth",
    "authorization",
    "jwt",
    "otp",
    # web sessions
    "cookie",
    "session",
    "csrf",
    "xsrf",
    # payment cards and personal numbers
    "card_number",
    "cardnumber",
    "cc_number",
    "credit_card",
    "pan",
    "cvv",
    "cvc",
    "pin",
    "ssn",
)

#: Strings longer than this are cut before scanning (the limits cut them far shorter anyway).
MAX_SCAN = 1 << 20

_SHORT = 4  # fragments this long or shorter must be a whole word of the key
# A key ending like this names an exception or a log level, as in "TokenError: expired".
_NOT_A_KEY = ("error", "exception", "warning", "failed", "expired", "invalid")

_HEADER_HINTS = ("authoriz", "cookie", "api-key", "auth-token")


class _Patterns:
    """The regular expressions of the rules, compiled on first use: about 5 ms that
    ``import alertkit`` does not pay."""

    def __init__(self) -> None:
        self.separators = re.compile(r"[\s_.\-]+")
        self.words = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
        self.url_userinfo = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:]*:)([^\s/?#@]+)@")
        # Every http(s) URL, wherever it stands in the text; trailing punctuation is cut off.
        self.url = re.compile(r"(?i)\bhttps?://[^\s\"'<>\\`]+")
        # A header anywhere in a line: its whole value, to the end of the line, is the secret.
        self.header = re.compile(
            r"(?i)(?<![\w-])((?:proxy-)?(?:authorization|cookie|set-cookie|x-api-key|"
            r"x-auth-token|api-key)[ \t]*:[ \t]*)(\S[^\r\n]*)"
        )
        self.bearer = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9\-._~+/]+=*)")
        self.basic = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
        # One tokenizer for every way text names a value: ``key=value``, ``key: value``,
        # ``"key": "value"`` (also JSON escaped inside a string), ``key => value``,
        # ``--key value``, ``--key=value``, ``'--key', 'value'`` (an argument list) and
        # ``<key ...>value</key>``. Only the key and its separator are consumed; the value is
        # looked at ahead, so a key that is not secret (``failed: password=x``) never swallows
        # the pair that follows it.
        value = (
            r"(?:\\+\"[^\"\\\n]*\\+\""  # \"...\" (JSON inside a JSON string)
            r"|\"(?:[^\"\\\n]|\\.)*\""
            r"|'(?:[^'\\\n]|\\.)*'"
            r"|[\"'][^\"'\n]*$"  # a quote left open (the string was cut): the rest of the text
            # bare: up to a space or delimiter (closing brackets at its end are left out
            # later), with a quote left open on a line that goes on
            r"|[\"']?(?![{\[])[^\s\"'&,;<>\\]+)"
        )
        self.pair = re.compile(
            r"<(?P<tag>[A-Za-z_][\w.\-:]{0,63})(?=(?:\s[^<>]{0,200})?>(?P<text>[^<]+)</(?P=tag)\s*>)"
            r"|(?<![\w-])--(?P<flag>[A-Za-z][\w.\-]{0,63})(?:=|[ \t]+|[\"'],[ \t]*)(?!-)"
            r"|(?<![\w.\-])(?P<key>[A-Za-z_][\w.\-]{0,63})\\*[\"']?[ \t]*(?:=>|[=:])[ \t]*"
        )
        # The value after a pair's separator, read only when the name is secret (reading it for
        # every name would scan to the end of ``a=a=a=...`` once per ``=``).
        self.value = re.compile(value)
        # Credentials recognisable by their form alone, whatever names them.
        self.token = re.compile(
            r"\beyJ[\w\-]{8,}\.eyJ[\w\-]{8,}\.[\w\-]*"  # a JWT
            r"|-----BEGIN[A-Z ]{0,20}PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]{0,20}PRIVATE "
            r"KEY-----|$)"
        )
        # A card number standing on its own: not a run of digits inside a longer token such as
        # a UUID (``…-4556-8290-15649074b305`` is Luhn-valid one time in ten).
        self.card = re.compile(
            r"(?<![0-9A-Za-z])(?<![0-9A-Za-z]-)[2-6](?:[ \-]?\d){12,18}(?![0-9A-Za-z])"
            r"(?!-[0-9A-Za-z])"
        )
        # What every match of ``card`` contains; searching for it first is a third of the cost.
        # The separator is taken possessively (``?+``, Python 3.11+): a separator is never a
        # digit, so no match is lost, and the search does not backtrack through every run of
        # digits. Python 3.10's re has no possessive quantifiers: the same matches, slower.
        possessive = "+" if sys.version_info >= (3, 11) else ""
        self.card_hint = re.compile(r"[2-6](?:[ \-]?" + possessive + r"\d){12}")


@functools.cache
def _patterns() -> _Patterns:
    return _Patterns()


_CLEAN_CACHE = 10_000
_CLEAN_CACHE_LEN = 1_000


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check that every payment card number passes."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _sub(pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], text: str) -> str:
    """``pattern.sub``, but ``text`` itself when every match was kept: callers (and the fast
    path of :meth:`Scrubber.__call__`) tell "nothing masked" by identity."""
    result = pattern.sub(replace, text)
    return text if result == text else result


def _normalize(key: str) -> str:
    return _patterns().separators.sub("", key).lower()


class Scrubber:
    """A pipeline processor that replaces secrets in an event with ``mask``; never raises.

    Args:
        denylist: key fragments that mark a secret (default :data:`DEFAULT_DENYLIST`).
        extra_keys: more fragments, added to ``denylist``.
        allow_keys: exact key names (case and separators ignored) never masked by key, e.g.
            ``("prompt_tokens",)``; the value rules still apply to their strings.
        mask: the replacement text.
        max_scan: strings longer than this are cut (with a marker) before they are scanned.

    Raises:
        TypeError: a list of keys is a single string or holds something else than strings.
    """

    def __init__(
        self,
        denylist: Iterable[str] = DEFAULT_DENYLIST,
        extra_keys: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        mask: str = MASK,
        max_scan: int = MAX_SCAN,
    ) -> None:
        fragments = _keys("denylist", denylist) + _keys("extra_keys", extra_keys)
        if not isinstance(mask, str):
            raise TypeError(f"mask must be a string, not {type(mask).__name__}")
        if isinstance(max_scan, bool) or not isinstance(max_scan, int) or max_scan < 1:
            raise ValueError(f"max_scan must be a positive whole number, got {max_scan!r}")
        normalized = {_normalize(f) for f in fragments} - {""}
        self.words = frozenset(f for f in normalized if len(f) <= _SHORT)
        self.fragments = tuple(sorted(normalized - self.words))
        self.allow = frozenset(_normalize(k) for k in _keys("allow_keys", allow_keys))
        self.mask = mask
        self.max_scan = max_scan
        self._hints = _any_of(normalized)
        self._re = _patterns()
        self._cache: dict[str, bool] = {}
        self._clean_texts: set[str] = set()  # repeated strings known to hold nothing to mask
        # Breadcrumbs found clean, by identity (consecutive errors share their trail).
        self._clean_crumbs = KnownObjects(_CRUMB_MEMO)
        # The envelope's fields beside the event: name, scrubbing method, what a part that fails
        # becomes.
        self._parts: tuple[tuple[str, str, Any], ...] = (
            ("details", "scrub_data", {}),
            ("payload", "scrub_data", None),
            ("request_log", "scrub_request_log", None),
            ("tags", "scrub_tags", {}),
            ("links", "scrub_links", []),
            ("images", "scrub_links", []),
            ("breadcrumbs", "scrub_breadcrumbs", ()),
            ("fingerprint", "scrub_fingerprint", None),
            ("template", "_repeated_text", mask),
            ("exc_text", "_text_or_none", mask),
        )
        self._scrub_parts: Callable[[Envelope, dict[str, Any]], None] | None = None

    def __repr__(self) -> str:
        return f"<Scrubber {len(self.words) + len(self.fragments)} key rules mask={self.mask!r}>"

    # -- keys ---------------------------------------------------------------------------------------

    def is_secret_key(self, key: object) -> bool:
        """True when a value under ``key`` must be masked."""
        name = key if isinstance(key, str) else safe_str(key)
        cached = self._cache.get(name)
        if cached is None:
            flat = _normalize(name)
            cached = flat not in self.allow and (
                any(fragment in flat for fragment in self.fragments)
                or any(word.lower() in self.words for word in self._re.words.findall(name))
            )
            if len(self._cache) < 10_000:
                self._cache[name] = cached
        return cached

    # -- values -------------------------------------------------------------------------------------

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret the value rules recognise replaced by the mask.

        Returns ``text`` itself (the same object) when there is nothing to mask, so that callers
        tell "nothing masked" by identity: each rule runs only when a cheap test on the text says
        it could match.
        """
        original = text  # one call per string (this runs for every string the scrubber reaches)
        if len(text) > self.max_scan:
            text = clip(text, self.max_scan)
        lower = text.lower()  # cheap tests on it skip the patterns that cannot match
        mentions: bool | None = None  # whether a secret-looking key is named: found once
        if "://" in text:
            if ("?" in text or "#" in text) and (
                "%" in text or (mentions := self._mentions_key(lower))
            ):
                text = _sub(self._re.url, self._url, text)
            if "@" in text:
                text = self._re.url_userinfo.sub(lambda m: f"{m.group(1)}{self.mask}@", text)
        if ":" in text and any(map(lower.__contains__, _HEADER_HINTS)):  # in C, no generator
            text = self._re.header.sub(lambda m: m.group(1) + self.mask, text)
        if "bearer" in lower:
            text = _sub(self._re.bearer, self._bearer, text)
        if "basic" in lower:
            text = _sub(self._re.basic, self._basic, text)
        # A one-character test (memchr) first: a longer needle costs a scan of the whole text.
        dash = "-" in text
        if ("=" in text or ":" in text or (dash and "--" in text) or "<" in text) and (
            mentions or (mentions is None and self._mentions_key(lower))
        ):
            text = self._pairs(text)
        if ("J" in text and "eyJ" in text) or (dash and "-----" in text):
            text = self._re.token.sub(self.mask, text)
        if self._re.card_hint.search(text) is not None:
            text = _sub(self._re.card, self._card, text)
        return original if text is original or text == original else text

    def _url(self, match: re.Match[str]) -> str:
        url = match.group(0)
        core = url.rstrip(".,;:!?)]}")
        masked = url.rfind(self.mask)
        if masked >= 0 and masked + len(self.mask) > len(core):
            core = url[: masked + len(self.mask)]  # a mask put in before ends the URL: kept whole
        scrubbed = self.scrub_url(core)
        return match.group(0) if scrubbed is core else scrubbed + url[len(core) :]

    def _pairs(self, text: str) -> str:
        """Mask the value of every pair (see ``_Patterns.pair``) whose name is secret-looking."""
        spans: list[tuple[int, int]] = []
        covered = 0  # the end of the last value masked: pairs inside it need no reading
        for match in self._re.pair.finditer(text):
            if match.start() < covered:
                continue
            name = match.group("key") or match.group("flag") or match.group("tag")
            if name.lower().endswith(_NOT_A_KEY) or not self.is_secret_key(name):
                continue
            if match.group("tag"):
                start, end = match.span("text")
            else:
                found = self._re.value.match(text, match.end())
                if found is None:
                    continue
                start, end = found.span()
            value = text[start:end]
            if value[-1:] in (")", "]", "}") and value[:1] not in ('"', "'", "\\"):
                value = value.rstrip(")]}")  # connect(password=x): the bracket is not the secret
                end = start + len(value)
            opening = len(value) - len(value.lstrip("\\\"'"))
            closing = len(value) - len(value.rstrip("\\\"'"))
            if value[:opening] != value[len(value) - closing :] or opening + closing >= len(value):
                closing = 0  # an unclosed quote: all after the opening one is the secret
            inner_start, inner_end = start + opening, end - closing
            if inner_start >= inner_end or text.startswith(self.mask, inner_start):
                continue
            spans.append((inner_start, inner_end))
            if not match.group("tag"):  # an element's text comes after its attributes
                covered = inner_end
        if not spans:
            return text
        pieces: list[str] = []
        last = 0
        for start, end in sorted(spans):  # overlapping spans (a value holding a pair) merge
            if start >= last:
                pieces += (text[last:start], self.mask)
            last = max(last, end)
        pieces.append(text[last:])
        return "".join(pieces)

    def _mentions_key(self, lower: str) -> bool:
        flat = lower.replace("_", "").replace("-", "").replace(".", "").replace(" ", "")
        return self._hints is not None and self._hints.search(flat) is not None

    def scrub_url(self, url: str) -> str:
        """Mask the secret-looking query (and fragment) parameters and the password of a URL."""
        from urllib.parse import urlsplit  # here: most processes never scrub a URL

        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            return url
        query = self._scrub_params(parts.query)
        fragment = self._scrub_params(parts.fragment) if "=" in parts.fragment else parts.fragment
        netloc = parts.netloc
        if parts.password is not None and "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:{self.mask}@{host}"
        if (query, fragment, netloc) == (parts.query, parts.fragment, parts.netloc):
            return url
        return (
            f"{parts.scheme}://{netloc}{parts.path}"
            + (f"?{query}" if query or "?" in url.partition("#")[0] else "")
            + (f"#{fragment}" if fragment or "#" in url else "")
        )

    def _scrub_params(self, query: str) -> str:
        if not query:
            return query
        from urllib.parse import unquote_plus

        pieces = query.split("&")
        for index, piece in enumerate(pieces):
            key, sep, _ = piece.partition("=")
            if sep and self.is_secret_key(unquote_plus(key)):
                pieces[index] = f"{key}={self.mask}"
        return "&".join(pieces)

    def _bearer(self, match: re.Match[str]) -> str:
        token = match.group(2)
        looks_random = len(token) >= 20 or (
            len(token) >= 8 and any(c.isdigit() or c in "-._~+/=" for c in token)
        )
        return match.group(1) + self.mask if looks_random else match.group(0)

    def _basic(self, match: re.Match[str]) -> str:
        import base64  # here: most processes never see a Basic credential

        token = match.group(2)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except ValueError:  # binascii.Error is one
            return match.group(0)
        return match.group(1) + self.mask if b":" in decoded else match.group(0)

    def _card(self, match: re.Match[str]) -> str:
        digits = match.group(0).replace(" ", "").replace("-", "")
        return self.mask if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)

    # -- structures ---------------------------------------------------------------------------------

    def scrub_data(self, value: Any, _depth: int = 0, _path: frozenset[int] = frozenset()) -> Any:
        """``value`` with secret keys masked and every string scrubbed: ``value`` itself when
        nothing in it is masked.

        Mappings become dicts, tuples and sets lists, strings are scrubbed, numbers, bools and
        None pass; anything else becomes its scrubbed ``repr``. Cycles become ``"<cycle>"``;
        what is nested deeper than 64 levels becomes the mask (it is not worth the risk).
        """
        kind = type(value)  # exact-type checks first: the ABC checks below cost microseconds
        if kind is str:
            return self.scrub_text(value)
        if value is None or kind is bool or kind is int or kind is float:
            return value
        if kind is dict and _depth < 64 and id(value) not in _path:  # as below, sooner
            try:
                return self._mapping(value, _depth, _path)
            except Exception:
                return self.mask
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, bool | int | float):
            return value
        if isinstance(value, bytes | bytearray):
            return self.scrub_text(bytes(value[: self.max_scan]).decode("utf-8", "replace"))
        if _depth >= 64:
            return self.mask
        if id(value) in _path:
            return "<cycle>"
        try:
            if kind is dict or isinstance(value, Mapping):
                return self._mapping(value, _depth, _path)
            if kind is list or isinstance(value, list | tuple | set | frozenset):
                path = _path | {id(value)}
                items = [self.scrub_data(item, _depth + 1, path) for item in list(value)]
                return _kept(value, items)
        except Exception:  # a user mapping or sequence that fails to iterate
            return self.mask
        return self.scrub_text(safe_repr(value))

    def _mapping(self, value: Mapping[Any, Any], depth: int, path: frozenset[int]) -> Any:
        """A mapping with secret keys masked and its values scrubbed: ``value`` itself (a dict)
        when nothing is masked; the copy starts at the first item that changes."""
        items = list(value.items())
        result: dict[Any, Any] | None = None if type(value) is dict else {}
        verdicts = self._cache
        inner: frozenset[int] | None = None
        for index, (key, item) in enumerate(items):
            secret = verdicts.get(key) if type(key) is str else None
            if secret is None:
                secret = self.is_secret_key(key)
            kind = type(item)  # plain values inline: no call per item of a flat dict
            if secret:
                new = self._masked(item)
            elif kind is str:
                new = self.scrub_text(item)
            elif item is None or kind is int or kind is float or kind is bool:
                new = item
            else:
                if inner is None:
                    inner = path | {id(value)}
                new = self.scrub_data(item, depth + 1, inner)
            if result is None and new is not item:
                result = dict(items[:index])
            if result is not None:
                result[key] = new
        return value if result is None else result

    def _masked(self, value: Any) -> Any:
        """The mask, except for None and bools, which cannot hold a secret and say something."""
        return value if value is None or isinstance(value, bool) else self.mask

    def _text_or_none(self, value: Any) -> Any:
        if value is None:
            return None
        return self.scrub_text(value if isinstance(value, str) else safe_str(value))

    def _repeated_text(self, value: Any) -> Any:
        """:meth:`_text_or_none` for a string that repeats from event to event (a template, a
        tag): strings found clean are remembered, so a repeat costs one set lookup."""
        if value is None or value in self._clean_texts:
            return value
        scrubbed = self._text_or_none(value)
        if (
            scrubbed is value
            and len(self._clean_texts) < _CLEAN_CACHE
            and len(value) <= _CLEAN_CACHE_LEN
        ):
            self._clean_texts.add(value)
        return scrubbed

    def scrub_tags(self, tags: Any) -> Any:
        """Tag values masked by key and scrubbed as text."""
        if not isinstance(tags, Mapping):
            return self.scrub_data(tags)
        return _kept(
            tags,
            {
                key: self.mask if self.is_secret_key(key) else self._repeated_text(value)
                for key, value in list(tags.items())
            },
        )

    def scrub_breadcrumbs(self, crumbs: Any) -> Any:
        """Breadcrumbs: each scrubbed as data; ``crumbs`` itself when nothing is masked.

        Consecutive errors share most of their trail (the same crumb objects), so each crumb is
        scrubbed once: a crumb found clean is remembered by identity (:class:`KnownObjects`),
        and a trail of remembered crumbs is told by C-level look-ups.
        """
        if not isinstance(crumbs, list | tuple):
            return self.scrub_data(crumbs)
        clean = self._clean_crumbs
        changed = False
        for crumb in clean.unknown(crumbs):  # usually the newest crumb only
            if crumb in clean:
                continue  # the same crumb twice in one trail
            if self.scrub_data(crumb) is crumb:
                clean.add(crumb)
            else:
                changed = True
        if not changed:
            clean.settled(crumbs)
            return crumbs
        return tuple(c if c in clean else self.scrub_data(c) for c in crumbs)

    def scrub_fingerprint(self, parts: Any) -> Any:
        """A fingerprint: each element scrubbed as a repeated text (a grouping repeats)."""
        if not isinstance(parts, list | tuple):
            return self.scrub_data(parts)
        return _kept(parts, [self._repeated_text(part) for part in parts])

    def scrub_links(self, links: Any) -> Any:
        """Links or images: each mapping scrubbed as data; ``links`` itself (a
        list, or the empty tuple of a new envelope) when nothing is masked."""
        if not isinstance(links, list | tuple):
            return self.scrub_data(links)
        scrubbed = [self.scrub_data(link) for link in links]
        return links if all(a is b for a, b in zip(links, scrubbed, strict=True)) else scrubbed

    def scrub_request_log(self, log: Any) -> Any:
        """The scope's request log: its sections map operation names (``"auth_service"``) to
        entries, so there the names are not keys to judge; each entry is scrubbed as data."""
        if not isinstance(log, Mapping):
            return self.scrub_data(log)
        result: dict[Any, Any] = {}
        for key, value in list(log.items()):
            if key in SECTIONS and isinstance(value, Mapping):
                result[key] = _kept(
                    value, {name: self.scrub_data(entry) for name, entry in list(value.items())}
                )
            elif self.is_secret_key(key):
                result[key] = self._masked(value)
            else:
                result[key] = self.scrub_data(value)
        return _kept(log, result)

    def scrub_event(self, event: AppEvent) -> AppEvent:
        """The wire event with its free-text fields, URL and custom data scrubbed: ``event``
        itself when nothing is masked."""
        changes: dict[str, Any] = {}
        message, url = event.event_message, event.context_url
        if message is not None and (new := self._text_or_none(message)) is not message:
            changes["event_message"] = new
        if url is not None and (new := self._text_or_none(url)) is not url:
            changes["context_url"] = new
        tags = event.context_tags
        if isinstance(tags, list) and tags:
            kept = _kept(tags, [self._context_tag(tag) for tag in tags])
            if kept is not tags:
                changes["context_tags"] = kept
        stack = event.event_stacktrace
        if isinstance(stack, list) and stack:
            kept = _kept(stack, [self._exception(entry) for entry in stack])
            if kept is not stack:
                changes["event_stacktrace"] = kept
        if event.custom_properties is not None or event.custom_segments is not None:
            for name in ("custom_properties", "custom_segments"):
                data = getattr(event, name)
                if isinstance(data, CustomData) and (new := self._custom(data)) is not data:
                    changes[name] = new
        return msgspec.structs.replace(event, **changes) if changes else event

    def _exception(self, entry: Any) -> Any:
        if not isinstance(entry, InnerStackTrace):
            return entry
        message = self._text_or_none(entry.message)
        return (
            entry if message is entry.message else msgspec.structs.replace(entry, message=message)
        )

    def _custom(self, data: CustomData) -> CustomData:
        strings = data.string_data
        if strings is None:
            return data
        scrubbed = {
            field: self._text_or_none(getattr(strings, field))
            for field in strings.__struct_fields__
        }
        if all(value is getattr(strings, field) for field, value in scrubbed.items()):
            return data
        return msgspec.structs.replace(
            data, string_data=msgspec.structs.replace(strings, **scrubbed)
        )

    def _context_tag(self, tag: Any) -> Any:
        if not isinstance(tag, str):
            return self._text_or_none(tag)
        if tag in self._clean_texts:
            return tag
        key, sep, _ = tag.partition(":")
        if sep and self.is_secret_key(key):
            return f"{key}:{self.mask}"
        return self._repeated_text(tag)

    # -- the processor ------------------------------------------------------------------------------

    def __call__(self, envelope: Envelope) -> Envelope:
        """``envelope`` with every secret masked: itself when nothing is, else a copy; a part
        that fails is masked whole.

        Metrics pass untouched: their tags are dimensions chosen by the application (a tag named
        ``session`` is a label, not a session cookie) and they carry no free text.
        """
        if envelope.kind == "metric":
            return envelope
        changes: dict[str, Any] = {}
        event = envelope.event
        if isinstance(event, AppEvent):
            scrubbed = self._part(self.scrub_event, event, None)
            if scrubbed is None:
                scrubbed = msgspec.structs.replace(
                    event, event_message=self.mask, event_stacktrace=None
                )
            if scrubbed is not event:
                changes["event"] = scrubbed
        if self._scrub_parts is None:
            self._scrub_parts = self._compile_parts()
        self._scrub_parts(envelope, changes)
        return msgspec.structs.replace(envelope, **changes) if changes else envelope

    def _compile_parts(self) -> Callable[[Envelope, dict[str, Any]], None]:
        """The pass over the envelope's parts beside the event, compiled once from
        ``self._parts`` (as the limits compile theirs from the types): each field read by name,
        an empty one skipped inline (nothing to scrub: the same as scrubbing it, without the
        calls), the others scrubbed, and what changed put in ``changes``."""
        scope: dict[str, Any] = {"EMPTY": _EMPTY_KINDS, "part": self._part}
        body = ["def scrub_parts(envelope, changes):"]
        for index, (name, scrub, fallback) in enumerate(self._parts):
            scope[f"scrub{index}"], scope[f"fallback{index}"] = getattr(self, scrub), fallback
            body += [
                f"    v = envelope.{name}",
                "    if v is not None and (type(v) not in EMPTY or v):",
                f"        n = part(scrub{index}, v, fallback{index})",
                "        if n is not v:",
                f"            changes[{name!r}] = n",
            ]
        exec("\n".join(body), scope)  # source built from the envelope's own field names
        compiled: Callable[[Envelope, dict[str, Any]], None] = scope["scrub_parts"]
        return compiled

    @staticmethod
    def _part(scrub: Callable[[Any], Any], value: Any, fallback: Any) -> Any:
        try:
            return scrub(value)
        except Exception as exc:  # a bug here must not leak: fail closed, and say so
            report_internal_error(exc)
            return fallback


#: Breadcrumbs remembered as scrubbed (a few trails' worth).
_CRUMB_MEMO = 1024
#: Exact types whose empty values hold nothing to scrub.
_EMPTY_KINDS = (dict, list, tuple, str)


def _kept(old: Any, new: Any) -> Any:
    """``old`` itself when ``new`` (built from it item by item) holds the very same keys and
    values, so that "nothing masked" costs no copy and is told by identity; else ``new``."""
    if type(old) is dict:
        if len(old) == len(new) and all(
            a is c and b is d for (a, b), (c, d) in zip(old.items(), new.items(), strict=True)
        ):
            return old
    elif (
        type(old) is list
        and len(old) == len(new)
        and all(a is b for a, b in zip(old, new, strict=True))
    ):
        return old
    return new


def _any_of(fragments: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern that finds any of ``fragments`` in a text (None for none): the fragments as a
    tree of common prefixes (``a(?:ccesskey|pikey|uth)|...``), which the regular expression engine
    tries once per position of the text, about six times faster on a short text than testing
    each fragment in turn. A fragment holding another is left out: where it is, the other is."""
    words = sorted(set(fragments))
    words = [w for w in words if w and not any(o != w and o in w for o in words)]
    if not words:
        return None
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})

    def source(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + source(child) for char, child in sorted(node.items())]
        if len(branches) == 1:
            return branches[0]
        return "(?:" + "|".join(branches) + ")" if branches else ""

    return re.compile(source(tree))


def _keys(option: str, keys: Iterable[str]) -> list[str]:
    if isinstance(keys, str | bytes):
        raise TypeError(f"{option} must be a list of key names, not a single string")
    result = list(keys)
    for key in result:
        if not isinstance(key, str):
            raise TypeError(f"{option}: every key must be a string, got {type(key).__name__}")
    return result


def default_processors(
    *,
    scrub: bool = True,
    denylist: Iterable[str] | None = None,
    extra_keys: Iterable[str] = (),
    allow_keys: Iterable[str] = (),
    limits: Limits | None = None,
) -> list[Processor]:
    """The processors every client runs: the :class:`Scrubber`, then the :class:`Limits`.

    Scrubbing goes first so that a cut can never split a secret into a part no rule recognises.

    Args:
        scrub: False leaves secrets in (for a destination you trust with them); limits still apply.
        denylist: replaces :data:`DEFAULT_DENYLIST`.
        extra_keys: fragments added to the denylist.
        allow_keys: key names never masked by key.
        limits: the size limits (default :class:`Limits()`).

    Raises:
        TypeError: a value of the wrong type (the message names the option).
    """
    if limits is None:
        limits = Limits()
    elif not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
    processors: list[Processor] = []
    if scrub:
        processors.append(
            Scrubber(
                DEFAULT_DENYLIST if denylist is None else denylist,
                extra_keys=extra_keys,
                allow_keys=allow_keys,
                max_scan=limits.longest,
            )
        )
    processors.append(limits)
    return processors
