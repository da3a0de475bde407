"""The Django middleware in a tiny real Django project, driven by Django's test clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings

import alertkit
from alertkit import AlertHandler, Envelope
from alertkit.capture.scope import ESCALATION_EVENT_TYPE, add_to_log
from alertkit.integrations import django as alertkit_django
from alertkit.testing import MemoryBackend

MEMORY = MemoryBackend()
ALERTKIT = {"backends": [MEMORY], "sample_system": False, "register_atexit": False}

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="not-a-secret-test-key",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=[
            "alertkit.integrations.django.AlertkitMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        ALERTKIT=ALERTKIT,
    )
    django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseServerError  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

log = logging.getLogger("tests.django.views")


class PaymentError(Exception):
    pass


def ok(request: HttpRequest) -> HttpResponse:
    add_to_log("cart", "loaded", tag="api_logs")
    return HttpResponse("ok")


def boom(request: HttpRequest) -> HttpResponse:
    raise PaymentError("card processor exploded")


def item(request: HttpRequest, n: int) -> HttpResponse:
    raise PaymentError(f"item {n} exploded")


def unavailable(request: HttpRequest) -> HttpResponse:
    return HttpResponseServerError("down")


def missing(request: HttpRequest) -> HttpResponse:
    raise Http404("no such order")


def logs_error(request: HttpRequest) -> HttpResponse:
    log.error("stock service timed out")
    return HttpResponse("stale")


async def async_boom(request: HttpRequest) -> HttpResponse:
    raise PaymentError("async card processor exploded")


urlpatterns = [
    path("ok", ok, name="ok"),
    path("boom", boom, name="boom"),
    path("items/<int:n>", item),
    path("unavailable", unavailable, name="unavailable"),
    path("missing", missing, name="missing"),
    path("logs-error", logs_error, name="logs-error"),
    path("async-boom", async_boom, name="async-boom"),
]


@pytest.fixture(scope="module", autouse=True)
def database() -> Iterator[None]:
    call_command("migrate", verbosity=0)
    yield
    # The default client the middleware made from settings.ALERTKIT ends with the module: no
    # thread of it is left for the tests after these.
    from alertkit.capture.submit import replace_default

    previous = replace_default(None)
    if previous is not None:
        previous.shutdown(2)


@pytest.fixture(autouse=True)
def memory() -> Iterator[MemoryBackend]:
    """The backend of the client the middleware makes from settings.ALERTKIT, emptied."""
    alertkit_django._configured = None
    alertkit_django._settings_options()  # a fresh default client for the test, from settings
    MEMORY.clear()
    yield MEMORY
    MEMORY.clear()


def sent(memory: MemoryBackend) -> list[Envelope]:
    assert alertkit.get_client().flush(5)
    return list(memory.envelopes)


def test_a_view_exception_is_reported_once_with_its_trace(memory: MemoryBackend) -> None:
    """An exception Django turns into a 500 page: one event, its traceback, the request's data."""
    http = Client(raise_request_exception=False)
    reply = http.get(
        "/boom?token=abc",
        HTTP_AUTHORIZATION="Bearer s3cr3t-token",
        HTTP_COOKIE="sessionid=s3cr3t-session",
        HTTP_X_REQUEST_ID="req-7",
    )
    assert reply.status_code == 500
    [event] = sent(memory)
    assert event.event.event_type == ESCALATION_EVENT_TYPE
    assert event.event.event_message == "GET /boom failed: PaymentError: card processor exploded"
    assert event.event.event_stacktrace[0].type.endswith("PaymentError")
    assert any(line.function == "boom" for line in event.event.event_stacktrace[0].trace_lines)
    assert event.event.context_url == "http://testserver/boom"
    assert event.tags["transaction"] == "boom"
    assert event.request_log is not None
    request = event.request_log["api_logs"]["request"]
    assert request["code"] == 500
    assert request["extras"]["method"] == "GET"
    headers = request["extras"]["headers"]
    assert headers["x-request-id"] == "req-7"
    assert headers["authorization"] == "[Filtered]"
    assert headers["cookie"] == "[Filtered]"
    assert "s3cr3t" not in event.event.to_json() + str(event.request_log) + str(event.details)


def test_django_request_log_line_is_not_a_second_report(memory: MemoryBackend) -> None:
    """With AlertHandler on the root logger, Django's own lines about a request ("Internal Server
    Error: /boom" with the exception, "Internal Server Error: /unavailable" logged after the
    middleware returned, "Not Found: /missing") are absorbed: one event per failed request."""
    handler = AlertHandler(client=alertkit.get_client())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        http = Client(raise_request_exception=False)
        assert http.get("/boom").status_code == 500
        assert http.get("/missing").status_code == 404
        assert http.get("/unavailable").status_code == 500
    finally:
        root.removeHandler(handler)
    event, unavailable = sent(memory)
    assert unavailable.event.event_message == "GET /unavailable -> 500"
    assert event.event.event_message.startswith("GET /boom failed")
    assert event.logger_name is None
    assert event.request_log is not None
    assert list(event.request_log["error_logs"]) == [
        f"{PaymentError.__module__}.{PaymentError.__qualname__}"
    ]


def test_the_test_client_reraising_still_reports_once(memory: MemoryBackend) -> None:
    """Django's test client re-raises the view's exception after the response: one event."""
    with pytest.raises(PaymentError):
        Client().get("/items/7")
    [event] = sent(memory)
    assert event.event.event_message == "GET /items/7 failed: PaymentError: item 7 exploded"
    assert event.tags["transaction"] == "/items/<int:n>"  # an unnamed URL: its route


def test_the_authenticated_user_is_the_event_user(memory: MemoryBackend) -> None:
    User.objects.filter(username="jill").delete()
    jill = User.objects.create_user("jill", "jill@example.com", "pw-not-used")
    http = Client(raise_request_exception=False)
    http.force_login(jill)
    assert http.get("/boom").status_code == 500
    assert Client(raise_request_exception=False).get("/boom").status_code == 500  # anonymous
    signed_in, anonymous = sent(memory)
    assert signed_in.event.event_user == "jill"
    assert anonymous.event.event_user is None


def test_requests_that_succeed_or_404_send_nothing(memory: MemoryBackend) -> None:
    http = Client()
    assert http.get("/ok").status_code == 200
    assert http.get("/missing").status_code == 404
    assert http.get("/no-such-url").status_code == 404
    assert sent(memory) == []


def test_a_500_response_without_exception_is_reported_once(memory: MemoryBackend) -> None:
    assert Client().get("/unavailable").status_code == 500
    [event] = sent(memory)
    assert event.event.event_message == "GET /unavailable -> 500"
    assert not event.event.event_stacktrace
    assert event.tags["transaction"] == "unavailable"


def test_an_error_logged_in_a_view_is_folded_into_one_event(memory: MemoryBackend) -> None:
    handler = AlertHandler(client=alertkit.get_client())
    log.addHandler(handler)
    try:
        assert Client().get("/logs-error").status_code == 200
    finally:
        log.removeHandler(handler)
    [event] = sent(memory)
    assert event.event.event_message.endswith("stock service timed out")
    assert event.tags["transaction"] == "logs-error"


def test_failed_request_status_codes_from_settings(memory: MemoryBackend) -> None:
    """settings.ALERTKIT carries the middleware's own options beside the client's."""
    codes = [404, *range(500, 600)]
    with override_settings(ALERTKIT={**ALERTKIT, "failed_request_status_codes": codes}):
        assert Client().get("/missing").status_code == 404
    [event] = sent(memory)
    assert event.event.event_message == "GET /missing -> 404"


def test_async_views_under_asgi_report_once(memory: MemoryBackend) -> None:
    """Under ASGI the middleware runs in async mode: the same single report."""

    async def main() -> Any:
        return await AsyncClient(raise_request_exception=False).get("/async-boom")

    assert asyncio.run(main()).status_code == 500
    [event] = sent(memory)
    assert event.event.event_message.startswith("GET /async-boom failed: PaymentError")
    assert event.tags["transaction"] == "async-boom"


@pytest.mark.parametrize(
    ("config", "text"),
    [("pagerduty://key", "must be a dict"), ({"no_such_option": 1}, "settings.ALERTKIT")],
)
def test_bad_settings_fail_at_startup(config: object, text: str) -> None:
    with override_settings(ALERTKIT=config), pytest.raises(ImproperlyConfigured, match=text):
        alertkit_django.AlertkitMiddleware(lambda request: HttpResponse())


def test_a_bad_status_code_in_settings_is_rejected() -> None:
    with (
        override_settings(ALERTKIT={**ALERTKIT, "failed_request_status_codes": [700]}),
        pytest.raises(ValueError, match="failed_request_status_codes"),
    ):
        alertkit_django.AlertkitMiddleware(lambda request: HttpResponse())


def test_a_sync_request_is_found_through_its_thread_not_made_current(
    memory: MemoryBackend,
) -> None:
    """A sync request costs no context switch: alertkit finds it through the thread serving it,
    and makes its request object only when something needs it."""
    from alertkit.capture.current import current
    from alertkit.integrations import current_request

    seen: dict[str, Any] = {}

    def look(request: HttpRequest) -> HttpResponse:
        seen["ours"] = current.get()
        seen["found"] = current_request()
        log.info("looking")
        log.error("found it failing")
        return HttpResponse("ok")

    handler = AlertHandler(client=alertkit.get_client())
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        with override_settings(ROOT_URLCONF=_urls(path("look", look, name="look"))):
            assert Client().get("/look").status_code == 200
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert seen["ours"] is None
    assert seen["found"] is not None
    [event] = sent(memory)
    assert event.tags["transaction"] == "look"
    assert [c["message"] for c in event.breadcrumbs] == ["looking"]
    assert current_request() is None


def test_a_response_never_closed_ends_with_the_next_request(memory: MemoryBackend) -> None:
    """A 4xx/5xx response keeps its request until the server closes it; one never closed is
    ended by the next request on the thread, and nothing logged meanwhile is held back."""
    from django.test import RequestFactory

    from alertkit.integrations import current_request

    middleware = alertkit_django.AlertkitMiddleware(lambda request: HttpResponseServerError("x"))
    factory = RequestFactory()
    response = middleware(factory.get("/first"))  # never closed
    assert response.status_code == 500
    stale = current_request()
    log.addHandler(handler := AlertHandler(client=alertkit.get_client()))
    try:
        ok_middleware = alertkit_django.AlertkitMiddleware(lambda request: HttpResponse("ok"))
        assert ok_middleware(factory.get("/second")).status_code == 200
        assert current_request() is None  # the stale request was ended, not restored
        log.error("after both")
    finally:
        log.removeHandler(handler)
    messages = sorted(e.event.event_message for e in sent(memory))
    assert messages == ["GET /first -> 500", "after both"]
    assert stale is None or stale.finished


def _urls(*patterns: Any) -> Any:
    """A module-like URLconf of ``patterns``, for a view of one test."""
    import types

    module = types.ModuleType("tests_django_urls")
    module.urlpatterns = [*urlpatterns, *patterns]  # type: ignore[attr-defined]
    return module
