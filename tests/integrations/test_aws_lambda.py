"""AWS Lambda: a handler's error is delivered before the invocation ends, a timeout is announced
before it happens, and a destination that cannot answer never holds the invocation.

The context is a small stand-in with the documented attributes and
``get_remaining_time_in_millis()`` (the runtime's own class is not a library we can import).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from alertkit import Client
from alertkit.integrations.aws_lambda import wrap
from tests.standins.http import Reply, Request, ScriptedServer


class FakeContext:
    """The documented Lambda context: identifying fields and the time left."""

    function_name = "checkout"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:checkout"
    memory_limit_in_mb = 128
    aws_request_id = "8f5c-request"
    log_group_name = "/aws/lambda/checkout"
    log_stream_name = "2026/12/06/[$LATEST]0123"

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def make_client(server: ScriptedServer) -> Client:
    return Client(
        api_key="k",
        backends=[f"{server.url}/v1/events"],
        register_atexit=False,
        sample_system=False,
        timeout=5,
    )


def messages(server: ScriptedServer) -> list[str]:
    return [request.json()["eventMessage"] for request in list(server.requests)]


def test_an_exception_is_delivered_before_the_handler_re_raises(server) -> None:
    client = make_client(server)

    @wrap(client=client)
    def handler(event, context):
        raise ValueError(f"no stock for {event['sku']}")

    try:
        with pytest.raises(ValueError, match="no stock"):
            handler({"sku": "A-1"}, FakeContext(10))
        assert messages(server) == ["no stock for A-1"]  # already there when it re-raised
        body = server.requests[0].json()
        assert "ValueError" in body["eventType"]
        assert handler.flush_stats.reported == 1
        assert handler.flush_stats.late == 0
    finally:
        client.shutdown(1)


def test_events_logged_by_a_handler_are_delivered_before_it_returns(server) -> None:
    client = make_client(server)

    @wrap(client=client)
    def handler(event, context):
        for n in range(3):
            client.log({"eventmessage": f"step {n}"}, "warning")
        return {"statusCode": 200}

    try:
        assert handler({}, FakeContext(10)) == {"statusCode": 200}
        assert sorted(messages(server)) == ["step 0", "step 1", "step 2"]
        assert handler.flush_stats.reported == 0
    finally:
        client.shutdown(1)


def test_a_warning_is_delivered_before_the_function_times_out() -> None:
    warned = threading.Event()

    def record(request: Request) -> Reply:
        if request.json()["eventType"] == "LambdaTimeoutWarning":
            warned.set()
        return Reply()

    with ScriptedServer(record) as server:
        client = make_client(server)

        @wrap(client=client, warn_before=0.8)
        def handler(event, context):
            # A slow handler: the warning must arrive while it still runs, before the deadline.
            return warned.wait(context.get_remaining_time_in_millis() / 1000)

        try:
            context = FakeContext(1.5)
            assert handler({}, context) is True
            assert context.get_remaining_time_in_millis() > 0
            [message] = messages(server)
            assert message.startswith("checkout is about to time out")
            assert handler.flush_stats.warned == 1
        finally:
            client.shutdown(1)


def test_no_warning_when_the_handler_ends_in_time(server) -> None:
    client = make_client(server)

    @wrap(client=client, warn_before=0.5)
    def handler(event, context):
        return "fast"

    try:
        assert handler({}, FakeContext(0.8)) == "fast"
        time.sleep(0.5)  # past the moment the warning would have fired
        assert messages(server) == []
        assert handler.flush_stats.warned == 0
    finally:
        client.shutdown(1)


def test_an_unreachable_destination_is_counted_and_never_holds_the_invocation() -> None:
    with ScriptedServer([Reply(hang=True)]) as server:
        client = make_client(server)

        @wrap(client=client, flush_timeout=30, warn_before=None)
        def handler(event, context):
            raise RuntimeError("downstream failed")

        outcome: list[BaseException] = []

        def invoke() -> None:
            try:
                handler({}, FakeContext(0.6))
            except RuntimeError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=invoke, daemon=True)
        thread.start()
        thread.join(10)  # the budget is what the context has left (0.6 s), not flush_timeout
        try:
            assert not thread.is_alive()
            assert [str(e) for e in outcome] == ["downstream failed"]
            assert handler.flush_stats.late == 1
        finally:
            client.shutdown(0.5)


def test_wrap_rejects_a_warning_inside_the_margin() -> None:
    with pytest.raises(ValueError, match="warn_before"):
        wrap(warn_before=0.05, margin=0.1)
