"""Cancellation at every stage leaves no orphan (issue 2, behaviour 8)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest
from helpers import assert_pool_works, assert_settled
from servers import RawConnection, RawServer, UvicornServer, response_bytes, wait_until

from starlette_agent import Agent, Origin

pytestmark = pytest.mark.anyio


async def test_cancelled_while_queued(server: UvicornServer) -> None:
    async with Agent(max_sockets=1) as agent:
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.get, f"{server.url}/slow?delay=0.3")
            assert await wait_until(lambda: agent.stats().active == 1)
            with anyio.move_on_after(0.1) as scope:
                await agent.get(f"{server.url}/peer")
            assert scope.cancelled_caught
            assert agent.stats().queued == 0
        assert_settled(agent)
        assert server.stats.opened == 1
        await assert_pool_works(agent, f"{server.url}/peer")
        assert server.stats.opened == 1


async def test_cancelled_while_connecting(server: UvicornServer) -> None:
    stall = anyio.Event()
    calls: list[Origin] = []

    async def connector(origin: Origin) -> anyio.abc.ByteStream:
        calls.append(origin)
        if not stall.is_set():
            await anyio.sleep_forever()
        return await anyio.connect_tcp(origin.host, origin.port)

    async with Agent(max_sockets=1, connector=connector) as agent:
        with anyio.move_on_after(0.2) as scope:
            await agent.get(f"{server.url}/peer")
        assert scope.cancelled_caught
        assert_settled(agent)
        assert agent.stats().origins.get(agent.get_name(server.url)) is None or (
            agent.stats().idle == 0
        )
        stall.set()
        # The cancelled connect did not keep the only slot.
        await assert_pool_works(agent, f"{server.url}/peer")
        assert calls[0] == Origin("http", "127.0.0.1", server.port)
        assert server.stats.opened == 1


async def test_cancelled_while_sending(server: UvicornServer) -> None:
    async def endless_body() -> AsyncIterator[bytes]:
        yield b"start"
        await anyio.sleep_forever()
        yield b"never"  # pragma: no cover

    async with Agent(max_sockets=1) as agent:
        with anyio.move_on_after(0.3) as scope:
            await agent.post(f"{server.url}/echo", content=endless_body())
        assert scope.cancelled_caught
        assert_settled(agent)
        assert agent.stats().idle == 0  # a half-sent request's socket is not reusable
        assert await wait_until(lambda: server.stats.closed == 1)
        await assert_pool_works(agent, f"{server.url}/peer")
        assert server.stats.opened == 2


async def test_cancelled_while_waiting_for_headers(server: UvicornServer) -> None:
    async with Agent(max_sockets=1) as agent:
        with anyio.move_on_after(0.2) as scope:
            await agent.get(f"{server.url}/slow?delay=5")
        assert scope.cancelled_caught
        assert_settled(agent)
        assert agent.stats().idle == 0
        assert await wait_until(lambda: server.stats.closed == 1)
        await assert_pool_works(agent, f"{server.url}/peer")
        assert server.stats.opened == 2


async def test_cancelled_while_reading_body(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            await conn.wait_closed()
        else:
            from servers import keep_alive_handler

            await keep_alive_handler(conn)

    raw_server.handler = handler
    async with Agent(max_sockets=1) as agent:
        with anyio.move_on_after(0.2) as scope:
            await agent.get(raw_server.url)
        assert scope.cancelled_caught
        assert_settled(agent)
        assert await wait_until(lambda: raw_server.stats.closed == 1)
        await assert_pool_works(agent, raw_server.url, count=200)


async def test_many_cancellations_at_random_points_leave_no_orphan(server: UvicornServer) -> None:
    async with Agent(max_sockets=2) as agent:
        most_sockets = 0

        async def doomed(delay: float) -> None:
            nonlocal most_sockets
            with anyio.move_on_after(delay):
                await agent.get(f"{server.url}/slow?delay=0.02")
            stats = agent.stats()
            most_sockets = max(most_sockets, stats.active + stats.idle)

        async with anyio.create_task_group() as tg:
            for index in range(100):
                tg.start_soon(doomed, (index % 10) * 0.005)
        assert_settled(agent)
        # Counted client-side: the server may see a new socket before the close of a cancelled
        # one, so its own count of open connections can briefly exceed the limit.
        assert most_sockets <= 2
        await assert_pool_works(agent, f"{server.url}/peer", count=1000)
        assert agent.stats().active + agent.stats().idle <= 2


async def test_cancelled_connects_leave_no_socket_open(server: UvicornServer) -> None:
    rng = random.Random(7)
    async with Agent() as agent:
        for _ in range(1000):
            with anyio.move_on_after(rng.random() * 0.01):
                await agent.get(f"{server.url}/peer")
        assert_settled(agent)
    # Every socket the server saw was closed by the agent (none leaked off its books).
    assert await wait_until(lambda: server.stats.open == 0, timeout=5), server.stats


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)
async def test_a_retry_cancelled_natively_as_it_is_handed_a_socket_leaks_nothing(
    raw_server: RawServer,
) -> None:
    """A retry waits for a fresh socket; the socket freed for it is to be closed first; a native
    ``Task.cancel()`` lands right then. That socket must still be closed, and its slot freed."""

    async def handler(conn: RawConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(response_bytes())  # warm-up: this socket goes idle
            await conn.read_request()  # the retried request, on the reused socket...
            await anyio.sleep(0.2)
            return  # ...which closes without answering: the agent retries on a fresh socket
        while (request := await conn.read_request()) is not None:
            if request.target == "/slow":
                await anyio.sleep(0.3)
            await conn.send(response_bytes())

    raw_server.handler = handler
    async with Agent(max_sockets=1) as agent:
        await agent.get(f"{raw_server.url}/warm")
        retrying = asyncio.ensure_future(agent.get(f"{raw_server.url}/retried"))
        assert await wait_until(lambda: agent.stats().active == 1)
        # Queued behind the retried request, this one takes the slot when the reused socket
        # fails; the retry then queues for a fresh socket.
        async with agent.stream("GET", f"{raw_server.url}/slow") as response:
            await response.aread()
            # Its socket was just handed to the retry, to close before connecting: cancel the
            # retry now, before it runs again.
            retrying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await retrying
        assert agent.stats().retries == 1
        assert_settled(agent)
        assert await wait_until(lambda: raw_server.stats.open == 0)
        with anyio.fail_after(5):  # the only slot was given back
            assert (await agent.get(f"{raw_server.url}/after")).status == 200
