"""Every form of secret in free text, in every place of an event, reaches no backend, log or file.

One table of forms (``key=value`` after a word and a colon, URLs in a sentence, headers in the
middle of a line, command-line flags, XML elements, JSON inside a string, tokens known by their
shape ...). Each form is checked by the scrubber alone, then logged in four places (the message,
an ``extra`` field, an exception's message, a source line of a traceback) through real backends
(the local inbox file, an HTTP stand-in, Redis) and looked for in what they stored or received,
in every file the test wrote and in alertkit's log lines. A second table holds ordinary prose
that must come back unchanged (the very same string).
"""

from __future__ import annotations

import base64
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

import alertkit
from alertkit import AlertHandler, Client
from alertkit.backends import HttpBackend, LocalBackend, RedisBackend
from alertkit.backends.redis import LOGS_QUEUE
from alertkit.policy.scrub import MASK, Scrubber, default_processors
from tests.standins import redis as redis_servers
from tests.standins.http import Reply, ScriptedServer

redis_server_session = redis_servers.redis_server_session
redis_server = redis_servers.redis_server


class Form(NamedTuple):
    name: str
    text: str  # the text as an application would write it
    secret: str  # what must not come out


def _secret(index: int) -> str:
    return f"sEcr{index:02d}Xq7Lw9"  # has digits and is long enough for every rule


def _basic(index: int) -> str:
    return base64.b64encode(f"deploy:{_secret(index)}".encode()).decode()


_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqaWxsLTQyIn0.c2lnbmF0dXJlWqJw7x9"
_PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCformsPemBody"

#: (name, template): ``{s}`` is the secret, ``{b}`` the Basic credential holding it.
_TEMPLATES: list[tuple[str, str]] = [
    ("pair", "password={s}"),
    ("pair after a word and a colon", "login failed: password={s}"),
    ("pair after an exception name", "ValueError: password={s}"),
    ("pair after a note", "note: api_key={s}"),
    ("pair among others", "user=jill token={s} page=2"),
    ("yaml", "db:\n  password: {s}\n  host: db"),
    ("assignment in code", 'db_password = "{s}"'),
    ("keyword argument", 'connect(user="u", passwd="{s}")'),
    ("unquoted keyword argument", "connect(secret={s})"),
    ("python dict", "{{'api_key': '{s}', 'page': 3}}"),
    ("json", '{{"client_secret": "{s}"}}'),
    ("nested json", 'payload {{"user": {{"name": "jill", "password": "{s}"}}}}'),
    ("json inside a json string", 'body="{{\\"token\\":\\"{s}\\"}}"'),
    ("arrow", "api_key => '{s}'"),
    ("environment variable", "export AWS_SECRET_ACCESS_KEY={s}"),
    ("environment prefix", "PGPASSWORD={s} psql -h db"),
    ("camel case key", "userPassword: {s}"),
    ("session id", "session_id: {s}"),
    ("csrf in a form body", "csrf_token={s}&next=/"),
    ("long flag", "mysql -u root --password {s} shop"),
    ("long flag with equals", "deploy --api-key={s} --verbose"),
    ("argument list", "Command '['deploy', '--token', '{s}']' returned non-zero exit status 1."),
    ("xml element", "<password>{s}</password>"),
    ("xml element with attributes", '<ApiKey type="live">{s}</ApiKey>'),
    ("xml attribute", '<auth user="jill" token="{s}"/>'),
    ("url in a sentence", "POST https://api.example/cb?token={s} returned 500"),
    ("url at the end of a sentence", "see https://api.example/x?page=2&access_token={s}."),
    ("percent-encoded url key", "retrying https://api.example/x?api%5Fkey={s} now"),
    ("url fragment", "redirect to https://app.example/cb#access_token={s}&state=1"),
    ("url password", "cannot reach https://bob:{s}@db.example/x"),
    ("redis url", "redis://:{s}@10.0.0.1:6379/0 refused the connection"),
    ("postgres url", "could not connect to postgres://app:{s}@db:5432/app"),
    ("smtp url", "smtp://alerts%40example.com:{s}@mail:587 timed out"),
    ("cookie header in a line", "request failed with Cookie: a=1; sid={s}"),
    ("cookie header", "Cookie: theme=dark; sid={s}"),
    ("set-cookie header", "Set-Cookie: session={s}; Path=/; HttpOnly"),
    ("authorization token", "Authorization: Token {s}"),
    ("authorization bearer in a line", "sent Authorization: Bearer {s} to the API"),
    ("proxy authorization basic", "Proxy-Authorization: Basic {b}"),
    ("api key header", "upstream said X-Api-Key: {s} is revoked"),
    ("headers as a dict", "headers: {{'Authorization': 'Bearer {s}'}}"),
    ("bearer in prose", "retried with bearer {s} twice"),
    ("basic in prose", "using Basic {b} for the registry"),
]

FORMS: list[Form] = [
    Form(
        name,
        template.format(s=_secret(i), b=_basic(i)),
        _basic(i) if "{b}" in template else _secret(i),
    )
    for i, (name, template) in enumerate(_TEMPLATES)
] + [
    Form("card number with spaces", "card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
    Form("card number", "charged 5555555555554444 twice", "5555555555554444"),
    Form("jwt", f"id token {_JWT} rejected", "c2lnbmF0dXJlWqJw7x9"),
    Form(
        "private key",
        f"-----BEGIN RSA PRIVATE KEY-----\n{_PEM_BODY}\n-----END RSA PRIVATE KEY-----",
        _PEM_BODY,
    ),
]


def test_the_table_has_at_least_forty_forms_each_with_its_own_secret():
    assert len(FORMS) >= 40
    assert len({form.secret for form in FORMS}) == len(FORMS)
    for form in FORMS:
        assert form.secret in form.text


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.mark.parametrize("form", FORMS, ids=[form.name for form in FORMS])
def test_each_form_is_masked_in_text(scrubber, form):
    out = scrubber.scrub_text(form.text)
    assert form.secret not in out, out
    assert MASK in out


#: Ordinary text that must come back as the same string: no mask, no copy.
PROSE = [
    "password reset email sent to user 42",
    "the passwords did not match",
    "Your session expired, please log in again",
    "token refresh took 120 ms",
    "Authorization failed for user 42",
    "Step: authentication",
    "TokenExpiredError: token expired",
    "Bearer token expired",
    "Basic setup failed",
    "version 2.31.0 of requests on Python 3.12.1",
    "file /var/lib/app/session/cache.db is locked",
    "python -m pip install --upgrade pip",
    "ssh -o StrictHostKeyChecking=no deploy@host",
    "<b>password</b> is required",
    "the <token> placeholder is replaced",
    "see https://docs.example/guide#tokens",
    "GET https://api.example/v1/orders?page=2&sort=desc returned 500",
    "order 3645712b-d8d0-4556-8290-15649074b305 failed",
    "user=jill page=2 retry=3",
    "--- end of report ---",
    "at 1700000000123 ms",
    "we use github_actions and the ghost theme",
    "JSON -> YAML converter --- done",
    'File "/app/auth/views.py", line 42, in check_password',
]


@pytest.mark.parametrize("text", PROSE)
def test_ordinary_text_is_returned_unchanged(scrubber, text):
    assert scrubber.scrub_text(text) is text


# -- through real backends -------------------------------------------------------------------------

LOGGER = "tests.scrub_forms.app"
FAST = alertkit.RetryPolicy(backoff=0.01, max_backoff=0.05, max_attempts=2, circuit_threshold=0)
PLACES = ("message", "extra", "exception", "traceback")


def _forms_module(tmp_path: Path) -> ModuleType:
    """A module whose function N raises from a line that carries form N in a comment, so the
    form appears in the traceback's source line (and nowhere else in the event)."""
    lines = []
    for index, form in enumerate(FORMS):
        comment = form.text.replace("\n", " ")
        lines += [f"def form_{index}() -> None:", f'    raise RuntimeError("failed")  # {comment}']
    path = tmp_path / "forms_source" / "scrub_forms_source.py"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    spec = importlib.util.spec_from_file_location("scrub_forms_source", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _send_every_form(client: Client, module: ModuleType) -> None:
    logger = logging.getLogger(LOGGER)
    handler = AlertHandler(client=client, level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        for index, form in enumerate(FORMS):
            marker = f"form-{index:02d}"
            logger.error("%s message: %s", marker, form.text)
            logger.error("%s extra", marker, extra={"note": form.text, "form": marker})
            try:
                raise ValueError(form.text)
            except ValueError:
                logger.exception("%s exception", marker)
            try:
                getattr(module, f"form_{index}")()
            except RuntimeError:
                logger.exception("%s traceback", marker)
    finally:
        logger.removeHandler(handler)
    assert client.flush(30.0)


@pytest.fixture
def client_and_stand_ins(tmp_path, redis_server) -> Iterator[tuple[Client, list[ScriptedServer]]]:
    with ScriptedServer([Reply(200, {"ok": True})]) as http:
        client = Client(
            backends=[
                LocalBackend(tmp_path / "inbox.db"),
                HttpBackend(f"{http.url}/v1/events", api_key="k"),
                RedisBackend(redis_server.url),
            ],
            processors=default_processors(),
            retry=FAST,
            storm_window=0,
            app_name="forms",
            sample_system=False,
            register_atexit=False,
        )
        try:
            yield client, [http]
        finally:
            client.shutdown(5.0)


def test_no_form_in_any_place_reaches_a_backend_a_log_line_or_a_file(
    tmp_path, caplog, redis_server, client_and_stand_ins
):
    caplog.set_level(logging.DEBUG)
    client, servers = client_and_stand_ins
    module = _forms_module(tmp_path)
    _send_every_form(client, module)
    stats = client.stats()
    for name in ("local", "http", "redis"):
        assert stats[name]["delivered"] == len(FORMS) * len(PLACES), stats[name]

    outputs: dict[str, str] = {}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and "forms_source" not in path.parts and "__pycache__" not in path.parts:
            outputs[f"file {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    for server in servers:
        for number, request in enumerate(server.requests):
            outputs[f"{server.url} body {number}"] = request.body.decode("utf-8", "replace")
    with redis_server.client() as conn:
        for member, value in conn.hgetall(f"{LOGS_QUEUE}.values").items():
            outputs[f"redis {member.decode()}"] = value.decode("utf-8", "replace")
    for number, record in enumerate(caplog.records):
        if record.name == LOGGER:
            continue  # the application's own records: the secrets are theirs to log
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        outputs[f"log {number} {record.name}"] = text

    everything = "\n".join(outputs.values())
    for index in range(len(FORMS)):  # the events did arrive, in every place
        for place in PLACES:
            assert f"form-{index:02d} {place}" in everything
    assert "raise RuntimeError" in everything  # the traceback's source lines did arrive
    leaks = [
        f"{form.name}: in {where}"
        for form in FORMS
        for where, text in outputs.items()
        if form.secret in text
    ]
    assert not leaks, "\n".join(leaks[:40]) + f"\n({len(leaks)} in all)"
