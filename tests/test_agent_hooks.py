"""Trace hooks: what the agent reports at each step, and that hooks cannot hurt a request."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
from helpers import assert_settled
from recording_hooks import Recorder, check_lifecycles
from servers import (
    RawConnection,
    RawServer,
    TLSFiles,
    UvicornServer,
    keep_alive_handler,
    response_bytes,
    wait_until,
)

from starlette_agent import (
    Agent,
    AgentHooks,
    AgentOptions,
    ConnectionCreatedEvent,
    DequeuedEvent,
    InvalidOptionType,
    PoolTimeout,
    QueuedEvent,
    ReadTimeout,
    RemoteProtocolError,
    RequestEndEvent,
    RequestErrorEvent,
    RequestStartEvent,
)
from starlette_agent._hooks import HOOK_NAMES

pytestmark = pytest.mark.anyio


async def test_a_new_socket_then_a_reused_one_report_each_step(server: UvicornServer) -> None:
    recorder = Recorder()
    url = f"{server.url}/peer"
    async with Agent(hooks=recorder) as agent:
        first = await agent.get(url)
        second = await agent.get(url)
        key = agent.get_name(url)
    assert recorder.names == [
        "request_start",
        "connection_create_start",
        "connection_created",
        "request_end",
        "connection_released",
        "request_start",
        "connection_reused",
        "request_end",
        "connection_released",
        "connection_closed",
    ]
    [created] = recorder.of("connection_created")
    [reused] = recorder.of("connection_reused")
    [closed] = recorder.of("connection_closed")
    ends = recorder.of("request_end")
    # One socket all along, the very one the server saw.
    assert created.connection_id == reused.connection_id == closed.connection_id
    assert created.local_port == first.json()["port"] == server.stats.peer_ports[0]
    assert {event.pool_key for _, event in recorder.events} == {key}
    assert [(end.status, end.reused_socket) for end in ends] == [(200, False), (200, True)]
    assert ends[1].response is second
    assert 0 < created.connect_duration < 10 and created.tls_duration is None
    assert created.request is ends[0].request
    assert reused.requests == 1
    assert (closed.reason, closed.idle, closed.requests) == ("agent_closed", True, 2)
    # Each request's events share one context, and only that request's.
    starts = recorder.of("request_start")
    assert starts[0].context is created.context is ends[0].context
    assert starts[1].context is reused.context is ends[1].context
    assert starts[0].context is not starts[1].context
    assert check_lifecycles(recorder) == {"active": 0, "idle": 0}


async def test_tls_sockets_report_their_handshake_time(
    tls_server: UvicornServer, tls: TLSFiles
) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, ssl_context=tls.client_context()) as agent:
        assert (await agent.get(f"{tls_server.url}/peer")).status == 200
    [created] = recorder.of("connection_created")
    assert created.tls_duration is not None and 0 < created.tls_duration < 10
    assert 0 < created.connect_duration < 10


async def test_a_queued_request_reports_its_wait(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, max_sockets=1) as agent, anyio.create_task_group() as tg:
        tg.start_soon(agent.get, f"{server.url}/peer?delay=0.3")
        await wait_until(lambda: agent.stats().active == 1)
        response = await agent.get(f"{server.url}/peer")
    assert response.reused_socket
    [queued] = recorder.of("queued")
    [dequeued] = recorder.of("dequeued")
    assert isinstance(queued, QueuedEvent) and queued.queued == 1
    assert isinstance(dequeued, DequeuedEvent) and dequeued.outcome == "granted"
    assert 0.1 < dequeued.waited < 5
    assert queued.context is dequeued.context
    names = [
        name for name, event in recorder.events if getattr(event, "context", None) is queued.context
    ]
    assert names == ["request_start", "queued", "dequeued", "connection_reused", "request_end"]
    assert server.stats.opened == 1


async def test_a_request_that_times_out_in_the_queue_reports_it(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, max_sockets=1, pool_timeout=0.1) as agent:
        async with agent.stream("GET", f"{server.url}/stream/1"):
            with pytest.raises(PoolTimeout):
                await agent.get(f"{server.url}/peer")
        assert_settled(agent)
    [dequeued] = recorder.of("dequeued")
    [error] = recorder.of("request_error")
    assert dequeued.outcome == "timeout"
    assert isinstance(error, RequestErrorEvent) and isinstance(error.error, PoolTimeout)
    assert not error.cancelled and error.context is dequeued.context


async def test_closing_the_agent_ends_the_wait_of_queued_requests(server: UvicornServer) -> None:
    recorder = Recorder()
    agent = Agent(hooks=recorder, max_sockets=1)
    errors: list[BaseException] = []

    async def queued_get() -> None:
        try:
            await agent.get(f"{server.url}/peer")
        except Exception as exc:
            errors.append(exc)

    async with agent.stream("GET", f"{server.url}/stream/1"), anyio.create_task_group() as tg:
        tg.start_soon(queued_get)
        await wait_until(lambda: agent.stats().queued == 1)
        await agent.aclose()
    assert [d.outcome for d in recorder.of("dequeued")] == ["agent_closed"]
    assert len(errors) == 1 and len(recorder.of("request_error")) == 1


async def test_a_retried_request_counts_its_retries(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        if conn.index > 0:
            await keep_alive_handler(conn)
            return
        await conn.read_request()
        await conn.send(response_bytes(b"first"))
        await conn.read_request()  # and close without answering

    raw_server.handler = handler
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        await agent.get(raw_server.url)
        assert (await agent.get(raw_server.url)).status == 200
    end = recorder.of("request_end")[1]
    assert end.retries == 1 and not end.reused_socket
    assert recorder.reasons()[0] == "server_closed"
    check_lifecycles(recorder)


# --------------------------------------------------------------------------- headers


class AddsHeaders(AgentHooks):
    def __init__(self, headers: Any) -> None:
        self.headers = headers

    async def request_start(self, event: RequestStartEvent) -> Any:
        return self.headers


async def _echoed_headers(agent: Agent, url: str, **kwargs: Any) -> dict[str, list[str]]:
    response = await agent.get(f"{url}/echo", **kwargs)
    found: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        found.setdefault(name, []).append(value)
    return found


async def test_request_start_adds_headers_that_replace_the_callers(server: UvicornServer) -> None:
    hooks = [AddsHeaders({"traceparent": "00-abc-def-01"}), AddsHeaders([("x-b", "2")])]
    recorder = Recorder()
    async with Agent(hooks=[*hooks, recorder]) as agent:
        seen = await _echoed_headers(agent, server.url, headers={"TraceParent": "caller"})
    assert seen["traceparent"] == ["00-abc-def-01"]
    assert seen["x-b"] == ["2"]
    assert seen["host"] == [server.url.removeprefix("http://")]
    [start] = recorder.of("request_start")
    [end] = recorder.of("request_end")
    # request_start has the request as the caller made it; request_end, as it was sent.
    assert (b"TraceParent", b"caller") in start.request.raw_headers
    assert (b"traceparent", b"00-abc-def-01") in end.request.raw_headers
    assert b"TraceParent" not in dict(end.request.raw_headers)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-bad": "a\r\nInjected: 1"}, "control character"),
        ({"bad name": "1"}, "not a valid HTTP token"),
        ({"Host": "elsewhere.example"}, "set by the agent"),
        ({"Content-Length": "5"}, "set by the agent"),
        ({"Transfer-Encoding": "chunked"}, "set by the agent"),
        ({"Upgrade": "websocket"}, "set by the agent"),
        ("not headers", "mapping or a list"),
    ],
)
async def test_headers_a_hook_may_not_send_are_logged_and_dropped(
    server: UvicornServer, caplog: pytest.LogCaptureFixture, headers: Any, message: str
) -> None:
    caplog.set_level(logging.ERROR, logger="starlette_agent")
    async with Agent(hooks=[AddsHeaders(headers), AddsHeaders({"x-good": "1"})]) as agent:
        seen = await _echoed_headers(agent, server.url)
    assert seen["x-good"] == ["1"]
    assert "injected" not in seen and "x-bad" not in seen and "bad name" not in seen
    assert seen["host"] == [server.url.removeprefix("http://")]
    assert "content-length" not in seen and "upgrade" not in seen
    assert message in caplog.text and "AddsHeaders.request_start" in caplog.text


# --------------------------------------------------------------------------- failing hooks


async def test_a_hook_that_raises_is_logged_and_the_request_goes_on(
    server: UvicornServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="starlette_agent")
    after = Recorder()

    class Broken(Recorder):
        async def request_start(self, event: RequestStartEvent) -> None:
            raise ValueError("broken request_start")

        async def connection_created(self, event: ConnectionCreatedEvent) -> None:
            raise ValueError("broken connection_created")

        async def request_end(self, event: RequestEndEvent) -> None:
            raise ValueError("broken request_end")

    broken = Broken()
    async with Agent(hooks=[broken, after]) as agent:
        response = await agent.get(f"{server.url}/peer")
        assert response.status == 200 and response.reused_socket is False
        await agent.get(f"{server.url}/peer")
        assert agent.stats().errors == 0
    for name in ("request_start", "connection_created", "request_end"):
        assert f"broken {name}" in caplog.text
        assert f"Broken.{name} failed" in caplog.text
    # Its other hooks were still called, and the next object heard everything.
    overridden = ("request_start", "connection_created", "request_end")
    assert broken.names == [name for name in after.names if name not in overridden]
    assert after.names.count("request_end") == 2
    check_lifecycles(after)


async def test_hooks_that_all_raise_break_no_request_and_leave_the_pool_whole(
    server: UvicornServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every hook raises at every step (queueing, reuse, a timeout, each kind of close, in the
    requests' tasks and in the idle reaper's): each is logged, the requests go on, the next
    hooks object hears everything, and the pool's count of what it holds stays right."""
    caplog.set_level(logging.ERROR, logger="starlette_agent")
    failing, after = Recorder(fails=True), Recorder()
    options = AgentOptions(
        hooks=[failing, after], max_sockets=2, max_requests_per_socket=3, idle_timeout=0.3
    )
    statuses: list[int] = []
    async with Agent(options) as agent:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(lambda: _append_status(agent, f"{server.url}/peer", statuses))
        assert statuses == [200] * 8
        with pytest.raises(ReadTimeout):
            await agent.get(f"{server.url}/slow?delay=5", timeout=0.2)
        assert_settled(agent)
        if agent.stats().idle == 0:  # the sockets all reached max_requests: one more, idle
            assert (await agent.get(f"{server.url}/peer")).status == 200
        assert agent.stats().idle >= 1
        assert await wait_until(lambda: agent.stats().idle == 0)  # the reaper closed it
        assert (await agent.get(f"{server.url}/peer")).status == 200
        stats = agent.stats()
        assert stats.errors == len(after.of("request_error")) == 1
        assert stats.requests == len(after.of("request_start")) >= 10
        assert len(after.of("connection_created")) == stats.connections_created
        assert len(after.of("connection_reused")) == stats.connections_reused
        assert len(after.of("connection_closed")) == stats.connections_closed
    assert failing.names == after.names
    assert set(after.names) == set(HOOK_NAMES)
    assert {"max_requests", "error", "idle_timeout", "agent_closed"} <= set(after.reasons())
    for name in HOOK_NAMES:
        assert f"Recorder.{name} failed" in caplog.text, name
    assert check_lifecycles(after) == {"active": 0, "idle": 0}
    assert await wait_until(lambda: server.stats.closed == server.stats.opened)
    assert server.stats.opened == len(after.of("connection_created"))


async def _append_status(agent: Agent, url: str, statuses: list[int]) -> None:
    statuses.append((await agent.get(url)).status)


class Blocks(Recorder):
    """Records, then waits for ever, in one hook, the first time it is called."""

    def __init__(self, hook: str) -> None:
        super().__init__()
        self.hook = hook
        self.entered = anyio.Event()

    async def record(self, name: str, event: Any) -> None:
        await super().record(name, event)
        if name == self.hook and not self.entered.is_set():
            self.entered.set()
            await anyio.sleep_forever()


@pytest.mark.parametrize(
    "hook", ["request_start", "queued", "dequeued", "connection_created", "request_end"]
)
async def test_a_request_cancelled_in_a_hook_leaves_the_pool_whole(
    server: UvicornServer, hook: str
) -> None:
    blocks = Blocks(hook)
    async with Agent(hooks=blocks, max_sockets=1) as agent:
        async with anyio.create_task_group() as tg:
            if hook in ("queued", "dequeued"):
                # The first request holds the only socket, so the cancelled one queues.
                holder = await agent.dispatch(agent.build_request("GET", f"{server.url}/peer"))
            tg.start_soon(agent.get, f"{server.url}/peer")
            if hook == "dequeued":
                await wait_until(lambda: agent.stats().queued == 1)
                await holder.aread()  # hands the socket over: the waiter is granted it
            with anyio.fail_after(5):
                await blocks.entered.wait()
            if hook == "queued":
                await holder.aread()  # granted to the waiter while its hook still runs
            tg.cancel_scope.cancel()
        assert_settled(agent)
        # The agent still works, on the same one socket or a new one.
        assert (await agent.get(f"{server.url}/peer")).status == 200
    errors = [event for event in blocks.of("request_error") if event.cancelled]
    if hook == "request_end":
        assert errors == []  # it had its request_end: the request ended there
    else:
        [error] = errors
        assert any(event.context is error.context for event in blocks.of(hook))
    if hook == "queued":
        # Cancelled while queued: leaves the queue, and nothing was closed for it.
        assert [d.outcome for d in blocks.of("dequeued")] == ["cancelled"]
    if hook == "connection_created":
        assert blocks.reasons()[0] == "cancelled"
    if hook == "request_end":
        assert blocks.reasons()[0] == "unread_body"
    check_lifecycles(blocks)


async def test_a_cancelled_request_reports_request_error(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        with anyio.move_on_after(0.2):
            await agent.get(f"{server.url}/slow?delay=5")
        assert_settled(agent)
        assert await wait_until(lambda: server.stats.closed == 1)
    [error] = recorder.of("request_error")
    assert error.cancelled and isinstance(error.error, anyio.get_cancelled_exc_class())
    assert recorder.reasons() == ["cancelled"]
    assert 0.1 < error.duration < 5


async def test_a_failed_request_reports_the_callers_error(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")

    raw_server.handler = handler
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        with pytest.raises(RemoteProtocolError) as caught:
            await agent.get(raw_server.url)
    [error] = recorder.of("request_error")
    assert error.error is caught.value and not error.cancelled
    assert recorder.reasons() == ["error"]


# --------------------------------------------------------------------------- a whole load


async def test_under_load_every_socket_and_request_has_a_whole_life(
    server: UvicornServer, server2: UvicornServer
) -> None:
    """Many requests over two origins under max_total_sockets (queues, evictions, handing a
    socket to a waiter): the events tell each socket's state as ``stats()`` does."""
    recorder = Recorder()
    options = AgentOptions(max_sockets=3, max_total_sockets=4, max_free_sockets=2, hooks=recorder)
    urls = iter([f"{server.url}/peer", f"{server2.url}/peer"] * 300)
    statuses: list[int] = []

    async def worker() -> None:
        for url in urls:
            statuses.append((await agent.get(url)).status)

    async with Agent(options) as agent:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(24):
                    tg.start_soon(worker)
        assert statuses == [200] * 600
        stats = agent.stats()
        assert check_lifecycles(recorder) == {"active": stats.active, "idle": stats.idle}
        assert len(recorder.of("connection_created")) == stats.connections_created
        assert len(recorder.of("connection_reused")) == stats.connections_reused
        assert len(recorder.of("connection_closed")) == stats.connections_closed
        assert len(recorder.of("queued")) == len(recorder.of("dequeued")) > 0
        assert set(recorder.reasons()) <= {"pool_limit"}
    assert check_lifecycles(recorder) == {"active": 0, "idle": 0}
    assert server.stats.opened + server2.stats.opened == len(recorder.of("connection_created"))


# --------------------------------------------------------------------------- the option


def test_hooks_are_kept_as_a_tuple_in_the_options() -> None:
    one, two = Recorder(), Recorder()
    assert AgentOptions(hooks=one).hooks == (one,)
    assert AgentOptions(hooks=[one, two]).hooks == (one, two)
    assert AgentOptions(hooks=[one, two]) == AgentOptions(hooks=(one, two))
    assert hash(AgentOptions(hooks=[one])) == hash(AgentOptions(hooks=one))
    assert AgentOptions(hooks=[]).hooks is None


def test_a_hook_that_is_not_async_is_refused_naming_it() -> None:
    class Sync(AgentHooks):
        def request_end(self, event: RequestEndEvent) -> None:  # type: ignore[override]
            pass

    with pytest.raises(InvalidOptionType, match=r"hooks: request_end of .* must be an async"):
        Agent(hooks=Sync())


def test_an_object_with_no_hooks_is_refused() -> None:
    with pytest.raises(InvalidOptionType, match="hooks must be an AgentHooks object"):
        Agent(hooks=AgentHooks())
    with pytest.raises(InvalidOptionType, match="hooks must be an AgentHooks object"):
        Agent(hooks=[Recorder(), json])  # type: ignore[list-item]


async def test_an_object_need_not_subclass_agent_hooks(server: UvicornServer) -> None:
    statuses: list[int] = []

    class Plain:
        async def request_end(self, event: RequestEndEvent) -> None:
            statuses.append(event.status)

    async with Agent(hooks=Plain()) as agent:  # type: ignore[arg-type]
        await agent.get(f"{server.url}/status/204")
    assert statuses == [204]
