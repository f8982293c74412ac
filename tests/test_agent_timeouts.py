"""Timeouts raise the named error with the origin in the message (issue 2, behaviour 9)."""

from __future__ import annotations

import socket
import time

import anyio
import anyio.abc
import pytest
from helpers import assert_settled
from servers import RawConnection, RawServer, UvicornServer, wait_until

from starlette_agent import (
    Agent,
    AgentError,
    ConnectError,
    ConnectTimeout,
    Origin,
    PoolTimeout,
    ReadTimeout,
    WriteTimeout,
)

pytestmark = pytest.mark.anyio


async def _never_answer(conn: RawConnection) -> None:
    await conn.wait_closed()


async def test_read_timeout_from_a_server_that_never_answers(raw_server: RawServer) -> None:
    raw_server.handler = _never_answer
    async with Agent(read_timeout=0.2) as agent:
        started = time.monotonic()
        with pytest.raises(ReadTimeout) as caught:
            await agent.get(f"{raw_server.url}/hang")
        assert time.monotonic() - started < 3
        assert raw_server.origin in str(caught.value)
        assert isinstance(caught.value, AgentError)
        assert_settled(agent)
        assert agent.stats().errors == 1
        # The timed-out socket is closed, not pooled.
        assert await wait_until(lambda: raw_server.stats.closed == 1)
        assert agent.stats().idle == 0


async def test_per_request_timeout_overrides_the_agent(raw_server: RawServer) -> None:
    raw_server.handler = _never_answer
    async with Agent(read_timeout=30) as agent:
        with anyio.fail_after(5), pytest.raises(ReadTimeout):
            await agent.get(raw_server.url, timeout=0.2)


async def test_read_timeout_on_a_slow_uvicorn_route(server: UvicornServer) -> None:
    async with Agent(read_timeout=0.2) as agent:
        with pytest.raises(ReadTimeout, match=f"127.0.0.1:{server.port}"):
            await agent.get(f"{server.url}/slow?delay=2")
        assert (await agent.get(f"{server.url}/peer")).status == 200


async def test_pool_timeout_when_no_socket_frees(server: UvicornServer) -> None:
    async with Agent(max_sockets=1, pool_timeout=0.2) as agent:
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.get, f"{server.url}/slow?delay=1")
            assert await wait_until(lambda: agent.stats().active == 1)
            started = time.monotonic()
            with pytest.raises(PoolTimeout) as caught:
                await agent.get(f"{server.url}/peer")
            assert time.monotonic() - started < 2
            message = str(caught.value)
            assert server.origin in message
            assert "queue" in message.lower()
            assert "1" in message.replace(server.origin, "")  # one request was queued
            assert agent.stats().queued == 0
        assert_settled(agent)
        assert server.stats.opened == 1


async def test_per_request_timeout_is_also_the_pool_timeout(server: UvicornServer) -> None:
    async with Agent(max_sockets=1) as agent, anyio.create_task_group() as tg:
        tg.start_soon(agent.get, f"{server.url}/slow?delay=1")
        assert await wait_until(lambda: agent.stats().active == 1)
        with anyio.fail_after(3), pytest.raises(PoolTimeout):
            await agent.get(f"{server.url}/peer", timeout=0.2)


async def test_connect_timeout_from_a_stalling_connector(server: UvicornServer) -> None:
    async def connector(origin: Origin) -> anyio.abc.ByteStream:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async with Agent(connect_timeout=0.2, connector=connector) as agent:
        with pytest.raises(ConnectTimeout) as caught:
            await agent.get(f"{server.url}/peer")
        assert server.origin in str(caught.value)
        assert isinstance(caught.value, ConnectError)
        assert_settled(agent)
    assert server.stats.opened == 0


async def test_connect_error_from_a_failing_connector(server: UvicornServer) -> None:
    async def connector(origin: Origin) -> anyio.abc.ByteStream:
        raise OSError("no route for this test")

    async with Agent(connector=connector, max_sockets=1) as agent:
        for _ in range(3):  # a failed connect gives its slot back
            with pytest.raises(ConnectError) as caught:
                await agent.get(f"{server.url}/peer")
            assert server.origin in str(caught.value)
            assert not isinstance(caught.value, ConnectTimeout)
        assert_settled(agent)
        assert agent.stats().errors == 3


async def test_connect_error_from_a_refused_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there any more.
    async with Agent() as agent:
        with pytest.raises(ConnectError, match=f"http://127.0.0.1:{port}"):
            await agent.get(f"http://127.0.0.1:{port}/")
        assert_settled(agent)


async def test_write_timeout_when_the_server_does_not_read() -> None:
    # A listener that never accepts: the kernel completes the handshake and buffers a little,
    # then nobody reads. (An asyncio server would read into its own buffers behind our back.)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        async with Agent(write_timeout=0.3) as agent:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(WriteTimeout) as caught:
                await agent.post(f"http://127.0.0.1:{port}/", content=b"x" * 64_000_000)
            assert time.monotonic() - started < 3
            assert f"http://127.0.0.1:{port}" in str(caught.value)
            assert_settled(agent)
            assert agent.stats().idle == 0
