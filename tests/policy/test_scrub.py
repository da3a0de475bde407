"""The Scrubber's rules (keys, values, URLs) and the processor over a whole envelope."""

from __future__ import annotations

import pytest

from alertkit.model.event import (
    AppEvent,
    CustomData,
    CustomStringData,
    Envelope,
    InnerStackTrace,
    encode_event,
)
from alertkit.policy.scrub import DEFAULT_DENYLIST, MASK, Scrubber, default_processors, luhn_valid

VISA = "4111111111111111"  # a test card number, Luhn-valid
AMEX = "378282246310005"


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


def make_envelope(**fields: object) -> Envelope:
    event = AppEvent(api_key="KEY", classification="issue", event_type="t", event_message="m")
    return Envelope(event=event, **fields)  # type: ignore[arg-type]


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "userPassword",
        "X-Api-Key",
        "apiKey",
        "API_KEY",
        "Authorization",
        "set-cookie",
        "sessionid",
        "csrf_token",
        "aws_secret_access_key",
        "client_secret",
        "mysql_pwd",
        "cardPan",
        "card-number",
        "cvv2",
        "ssn",
        "basic_auth",
        "credentials",
    ],
)
def test_secret_keys_match_case_insensitively_as_substrings_or_words(scrubber, key):
    assert scrubber.is_secret_key(key)


@pytest.mark.parametrize("key", ["company", "author", "span", "shipping", "user", "page", "host"])
def test_short_fragments_match_only_whole_words(scrubber, key):
    assert not scrubber.is_secret_key(key)


def test_default_denylist_names_the_usual_secrets():
    for fragment in ("password", "secret", "token", "api_key", "authorization", "cookie", "cvv"):
        assert fragment in DEFAULT_DENYLIST


def test_nested_mappings_and_lists_are_masked_by_key(scrubber):
    data = {
        "user": "jill",
        "Password": "hunter2",
        "nested": {"list": [{"api_key": "k-1"}, {"ok": "fine"}], "Token": {"deep": "x"}},
        "tuple": ({"secret": 1},),
    }
    assert scrubber.scrub_data(data) == {
        "user": "jill",
        "Password": MASK,
        "nested": {"list": [{"api_key": MASK}, {"ok": "fine"}], "Token": MASK},
        "tuple": [{"secret": MASK}],
    }


def test_none_and_bools_under_secret_keys_are_kept(scrubber):
    assert scrubber.scrub_data({"has_password": False, "token": None}) == {
        "has_password": False,
        "token": None,
    }


def test_allow_keys_exempt_a_key_but_its_strings_are_still_scanned():
    scrubber = Scrubber(allow_keys=["prompt_tokens", "session_note"])
    out = scrubber.scrub_data(
        {"prompt_tokens": 12, "session_note": f"card {VISA}", "session_id": "s"}
    )
    assert out == {"prompt_tokens": 12, "session_note": f"card {MASK}", "session_id": MASK}


def test_extra_keys_add_to_the_denylist():
    scrubber = Scrubber(extra_keys=["tenant_code"])
    assert scrubber.scrub_data({"Tenant-Code": "abc", "password": "x"}) == {
        "Tenant-Code": MASK,
        "password": MASK,
    }


def test_a_replaced_denylist_drops_the_defaults():
    scrubber = Scrubber(denylist=["internal_id"])
    assert scrubber.scrub_data({"internal_id": 3, "password": "x"}) == {
        "internal_id": MASK,
        "password": "x",
    }


def test_custom_mask():
    assert Scrubber(mask="***").scrub_data({"token": "t"}) == {"token": "***"}


@pytest.mark.parametrize(
    ("option", "value"), [("denylist", "password"), ("extra_keys", [1]), ("allow_keys", b"x")]
)
def test_bad_key_lists_are_rejected_with_the_option_named(option, value):
    with pytest.raises(TypeError, match=option):
        Scrubber(**{option: value})


# -- values ----------------------------------------------------------------------------------------


def test_luhn():
    assert luhn_valid(VISA)
    assert luhn_valid(AMEX)
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"paid with {VISA}.", f"paid with {MASK}."),
        ("paid with 4111 1111 1111 1111 ok", f"paid with {MASK} ok"),
        ("paid with 4111-1111-1111-1111", f"paid with {MASK}"),
        (f"amex {AMEX}", f"amex {MASK}"),
        ("order 4111111111111112", "order 4111111111111112"),  # not Luhn-valid
        ("at 1700000000123 ms", "at 1700000000123 ms"),  # epoch milliseconds start with 1
        ("short 4111 1111", "short 4111 1111"),
        # Digit runs inside longer tokens are ids, not cards (this one is Luhn-valid).
        (
            "alert 3645712b-d8d0-4556-8290-15649074b305",
            "alert 3645712b-d8d0-4556-8290-15649074b305",
        ),
        ("trace x4111111111111111y", "trace x4111111111111111y"),
        (f"(card:{VISA})", f"(card:{MASK})"),
    ],
)
def test_card_numbers_are_masked_only_when_luhn_valid(scrubber, text, expected):
    assert scrubber.scrub_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123_x", f"Authorization: {MASK}"),
        ("sent bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", f"sent bearer {MASK}"),
        ("header Basic dXNlcjpodW50ZXIy end", f"header Basic {MASK} end"),
        ("Basic setup failed", "Basic setup failed"),  # not base64 of user:password
        ("Bearer token expired", "Bearer token expired"),  # an English word, not a token
    ],
)
def test_bearer_and_basic_credentials(scrubber, text, expected):
    assert scrubber.scrub_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('connect(password="hunter2", user="x")', f'connect(password="{MASK}", user="x")'),
        ("{'api_key': 'sk-1', 'page': 3}", f"{{'api_key': '{MASK}', 'page': 3}}"),
        ('{"client_secret": "s3"}', f'{{"client_secret": "{MASK}"}}'),
        ("login failed token=abc123 user=jill", f"login failed token={MASK} user=jill"),
        ("Cookie: a=1; b=2\nHost: x", f"Cookie: {MASK}\nHost: x"),
        ("TokenExpiredError: token expired", "TokenExpiredError: token expired"),
        ("company=acme pan=1234", f"company=acme pan={MASK}"),
    ],
)
def test_secret_key_value_pairs_inside_text(scrubber, text, expected):
    assert scrubber.scrub_text(text) == expected


# -- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x/cb?token=abc&page=2", f"https://x/cb?token={MASK}&page=2"),
        ("https://x/cb?page=2&API_KEY=k#top", f"https://x/cb?page=2&API_KEY={MASK}#top"),
        ("https://x/cb?api%5Fkey=k", f"https://x/cb?api%5Fkey={MASK}"),
        ("https://x/cb#access_token=abc&state=1", f"https://x/cb#access_token={MASK}&state=1"),
        ("https://user:pass@host/p?q=1", f"https://user:{MASK}@host/p?q=1"),
        ("http://host/p?page=1", "http://host/p?page=1"),
        ("https://host/p?", "https://host/p?"),
    ],
)
def test_urls_query_strings_and_userinfo(scrubber, url, expected):
    assert scrubber.scrub_text(url) == expected


def test_passwords_in_urls_inside_text_of_any_scheme(scrubber):
    text = "cannot reach redis://:hunter2@10.0.0.1:6379/0 nor smtp://bob:pw@mail"
    assert scrubber.scrub_text(text) == (
        f"cannot reach redis://:{MASK}@10.0.0.1:6379/0 nor smtp://bob:{MASK}@mail"
    )


# -- the processor ---------------------------------------------------------------------------------


def test_processor_scrubs_every_part_of_an_envelope(scrubber):
    event = AppEvent(
        api_key="KEY",
        classification="issue",
        event_type="t",
        event_message=f"charge {VISA} failed",
        context_url="https://shop/pay?session=s1&step=2",
        context_tags=["env:prod", "token:t1"],
        event_stacktrace=[InnerStackTrace(type="E", message="password=hunter2", trace_lines=[])],
        custom_properties=CustomData(string_data=CustomStringData(custom_data1=f"c {VISA}")),
        custom_segments=CustomData(string_data=CustomStringData(custom_data2="Bearer abcdef123")),
    )
    envelope = Envelope(
        event=event,
        details={"password": "p", "ok": f"x {VISA}"},
        payload={"custom_details": {"secret": "s"}},
        request_log={"entries": [{"url": "https://a/b?apikey=1"}]},
        tags={"auth_token": "t", "env": "prod"},
        links=[{"href": "https://a/b?token=1", "text": "see"}],
        images=[{"src": "https://a/i.png?sig=1&token=2"}],
        template="charge %s failed with password=%s",
        exc_text='  File "x.py"\n    login(password="hunter2")',
    )
    out = scrubber(envelope)
    wire = encode_event(out.event).decode()
    assert VISA not in wire and "hunter2" not in wire and "s1" not in wire
    assert "abcdef123" not in wire and "t1" not in wire
    assert out.event.context_url == f"https://shop/pay?session={MASK}&step=2"
    assert out.event.context_tags == ["env:prod", f"token:{MASK}"]
    assert out.event.api_key == "KEY"  # the event API's own key is not a leak
    assert out.details == {"password": MASK, "ok": f"x {MASK}"}
    assert out.payload == {"custom_details": {"secret": MASK}}
    assert out.request_log == {"entries": [{"url": f"https://a/b?apikey={MASK}"}]}
    assert out.tags == {"auth_token": MASK, "env": "prod"}
    assert out.links == [{"href": f"https://a/b?token={MASK}", "text": "see"}]
    assert out.images == [{"src": f"https://a/i.png?sig=1&token={MASK}"}]
    assert out.template == f"charge %s failed with password={MASK}"
    assert "hunter2" not in (out.exc_text or "")
    assert envelope.details["password"] == "p"  # the caller's objects are not changed


def test_cycles_and_odd_objects_do_not_raise(scrubber):
    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    class BadMapping(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[override]
            raise RuntimeError("no items")

    cyclic: dict[str, object] = {"name": "x"}
    cyclic["self"] = cyclic
    looped: list[object] = []
    looped.append(looped)
    envelope = make_envelope(
        details={
            "cyclic": cyclic,
            "looped": looped,
            "loud": Loud(),
            "bad": BadMapping(a=1),
            "bytes": f"card {VISA}".encode(),
            1: "int key",
        }
    )
    out = scrubber(envelope)
    assert out.details["cyclic"] == {"name": "x", "self": "<cycle>"}
    assert out.details["looped"] == ["<cycle>"]
    assert out.details["loud"] == "<unrepresentable Loud>"
    assert out.details["bad"] == MASK  # cannot be looked into: not sent
    assert out.details["bytes"] == f"card {MASK}"
    assert out.details[1] == "int key"


def test_structures_nested_beyond_64_levels_are_masked(scrubber):
    deep: list[object] = ["password=x"]
    for _ in range(5000):
        deep = [deep]
    out = scrubber.scrub_data(deep)
    for _ in range(64):
        out = out[0]
    assert out == MASK


def test_long_strings_are_cut_before_scanning():
    scrubber = Scrubber(max_scan=100)
    out = scrubber.scrub_text(f"{VISA} " + "x" * 1000)
    assert out.startswith(MASK) and out.endswith("...[cut 917 chars]")


def test_default_processors_scrub_then_limit():
    processors = default_processors()
    assert [type(p).__name__ for p in processors] == ["Scrubber", "Limits"]
    assert [type(p).__name__ for p in default_processors(scrub=False)] == ["Limits"]
    scrubber = default_processors(extra_keys=["tenant"], allow_keys=["token_count"])[0]
    assert isinstance(scrubber, Scrubber)
    assert scrubber.is_secret_key("tenant") and not scrubber.is_secret_key("token_count")
    with pytest.raises(TypeError, match="limits"):
        default_processors(limits={"max_string": 1})  # type: ignore[arg-type]


def test_request_log_entries_are_judged_by_content_not_by_operation_name(scrubber):
    log = {
        "alert_id": "a1",
        "api_logs": {"auth_service": {"value": "ok", "extras": {"password": "p"}}},
        "service_logs": {
            "token_refresh": {"url": "https://idp/x?client_secret=s&x=1", "code": 200}
        },
        "session_id": "s-1",
    }
    assert scrubber.scrub_request_log(log) == {
        "alert_id": "a1",
        "api_logs": {"auth_service": {"value": "ok", "extras": {"password": MASK}}},
        "service_logs": {
            "token_refresh": {"url": f"https://idp/x?client_secret={MASK}&x=1", "code": 200}
        },
        "session_id": MASK,
    }


@pytest.mark.allow_internal_errors
def test_a_part_that_fails_to_scrub_is_masked_whole_and_reported(monkeypatch, internal_errors):
    scrubber = Scrubber()

    def broken(value: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(scrubber, "scrub_data", broken)
    out = scrubber(make_envelope(details={"note": "kept?"}, payload={"a": 1}))
    assert out.details == {} and out.payload is None  # fail closed: nothing unscrubbed goes out
    assert out.event.event_message == "m"  # the other parts are still scrubbed and sent
    assert internal_errors and {str(error) for error in internal_errors} == {"bug"}


def test_repeated_templates_and_tags_are_judged_the_same_every_time(scrubber):
    """Clean repeated strings are remembered; a secret one is masked on every event."""
    for _ in range(3):
        clean = Envelope(
            event=AppEvent(api_key="", classification="issue", event_type="t", event_message="m"),
            template="order %s failed",
            tags={"env": "prod"},
        )
        assert scrubber(clean) is clean
        leaky = Envelope(
            event=AppEvent(api_key="", classification="issue", event_type="t", event_message="m"),
            template="login with password=hunter2 failed",
            tags={"note": "Bearer abcdef123"},
        )
        out = scrubber(leaky)
        assert out.template == f"login with password={MASK} failed"
        assert out.tags == {"note": f"Bearer {MASK}"}


# -- the pairs of free text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a pair whose key is not secret does not swallow the pair after it
        ("login failed: password=hunter2", f"login failed: password={MASK}"),
        (
            "url: https://x/cb?token=abc returned 500",
            f"url: https://x/cb?token={MASK} returned 500",
        ),
        # brackets closing around a bare value are not part of it
        ("connect(password=hunter2)", f"connect(password={MASK})"),
        # a value that is an object: its own secret keys are masked, not the whole of it
        (
            '"credentials": {"user": "jill", "secret": "s3"}',
            f'"credentials": {{"user": "jill", "secret": "{MASK}"}}',
        ),
        # a cut string: all after the opening quote is the secret
        ('password="hunter2 and mo', f'password="{MASK}'),
        (r"{\"token\":\"abc\"}", rf"{{\"token\":\"{MASK}\"}}"),
        ("--password hunter2 --user jill", f"--password {MASK} --user jill"),
        ("--password --verbose", "--password --verbose"),  # a flag is not its value
        ('<auth user="jill">s3</auth>', f'<auth user="jill">{MASK}</auth>'),
        ("Authorization: Token abc, retrying", f"Authorization: {MASK}"),
        ("password=[Filtered]", "password=[Filtered]"),  # already masked: kept as it is
    ],
)
def test_pairs_in_free_text(scrubber, text, expected):
    assert scrubber.scrub_text(text) == expected


@pytest.mark.parametrize("text", ["password" + "=a" * 100_000, "token:" * 35_000, "a=" * 100_000])
def test_pairs_cost_linear_time_in_the_length_of_the_text(scrubber, text):
    """Each value is read once: a quadratic tokenizer takes about a minute on these 200 KB."""
    import time

    started = time.thread_time()
    out = scrubber.scrub_text(text)
    assert time.thread_time() - started < 5.0  # about 40 ms on the shared development machine
    if text.startswith("password"):
        assert out.startswith(f"password={MASK}")


def test_a_url_masked_before_is_left_as_it_is():
    """Scrubbing twice (a second scrubber, a replayed event) changes nothing: the mask's closing
    bracket ends the URL, it is not trailing punctuation to cut off and add back."""
    scrubber = Scrubber()
    once = scrubber.scrub_text("see https://cb.example/hook?token=abc123secret")
    assert once == "see https://cb.example/hook?token=[Filtered]"
    assert scrubber.scrub_text(once) is once


def test_a_denylist_with_nested_and_special_fragments_masks_as_each_alone_would():
    scrubber = Scrubber(denylist=["pass", "passphrase", "a+b", "[k]"])
    assert scrubber.scrub_text("passphrase=abc123 note=kept") == "passphrase=[Filtered] note=kept"
    assert scrubber.scrub_text("db_pass: abc123") == "db_pass: [Filtered]"
    assert scrubber.scrub_text("a+b=1 and [k]=2 but ab=3") == "a+b=1 and [k]=2 but ab=3"
    assert Scrubber(denylist=[]).scrub_text("password=abc123") == "password=abc123"
