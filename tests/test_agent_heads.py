"""The response head is bounded: in time (``headers_timeout``), in interim responses, in size."""

from __future__ import annotations

import time

import anyio
import pytest
from helpers import assert_pool_works, assert_settled
from servers import RawConnection, RawServer, keep_alive_handler, wait_until

from starlette_agent import Agent, ReadTimeout, RemoteProtocolError

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\nok"


async def _trickle_head(conn: RawConnection) -> None:
    """The first connection gets its head one byte every 0.3 s; later ones are served."""
    if conn.index > 0:
        await keep_alive_handler(conn)
        return
    await conn.read_request()
    for index in range(len(HEAD)):
        await conn.send(HEAD[index : index + 1])
        await anyio.sleep(0.3)


async def test_a_trickled_head_is_cut_by_headers_timeout(raw_server: RawServer) -> None:
    raw_server.handler = _trickle_head
    # Each byte comes well within read_timeout: only headers_timeout can end this.
    async with Agent(read_timeout=1, headers_timeout=1) as agent:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(ReadTimeout) as caught:
            await agent.get(raw_server.url)
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "headers_timeout=1" in message
        assert raw_server.origin in message
        assert caught.value.origin == raw_server.origin
        assert_settled(agent)
        assert await wait_until(lambda: raw_server.stats.closed == 1)
        await assert_pool_works(agent, raw_server.url, count=50, concurrency=5)


async def _endless_continue(conn: RawConnection) -> None:
    await conn.read_request()
    while True:
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await anyio.sleep(0.001)


async def test_endless_interim_responses_are_a_protocol_error(raw_server: RawServer) -> None:
    raw_server.handler = _endless_continue
    async with Agent(headers_timeout=None, read_timeout=5) as agent:
        with anyio.fail_after(10), pytest.raises(RemoteProtocolError, match="interim"):
            await agent.get(raw_server.url)
        assert_settled(agent)
        assert await wait_until(lambda: raw_server.stats.closed == 1)


async def test_endless_interim_responses_also_end_at_headers_timeout(
    raw_server: RawServer,
) -> None:
    async def slow_continues(conn: RawConnection) -> None:
        await conn.read_request()
        while True:
            await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            await anyio.sleep(0.2)

    raw_server.handler = slow_continues
    async with Agent(headers_timeout=0.5, read_timeout=5) as agent:
        with anyio.fail_after(10), pytest.raises((ReadTimeout, RemoteProtocolError)):
            await agent.get(raw_server.url)
        assert_settled(agent)


async def test_a_few_interim_responses_are_fine(raw_server: RawServer) -> None:
    async def two_hints(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    raw_server.handler = two_hints
    async with Agent() as agent:
        for _ in range(3):
            response = await agent.get(raw_server.url)
            assert (response.status, response.content) == (200, b"ok")
        assert raw_server.stats.opened == 1


async def test_a_slow_but_whole_head_within_headers_timeout_is_fine(raw_server: RawServer) -> None:
    async def slow_head(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await anyio.sleep(0.3)
            await conn.send(HEAD)

    raw_server.handler = slow_head
    async with Agent(headers_timeout=2, read_timeout=1) as agent:
        assert (await agent.get(raw_server.url)).content == b"ok"


async def test_per_request_timeout_also_bounds_the_head(raw_server: RawServer) -> None:
    raw_server.handler = _trickle_head
    async with Agent(read_timeout=30, headers_timeout=30) as agent:
        with anyio.fail_after(10), pytest.raises(ReadTimeout):
            await agent.get(raw_server.url, timeout=0.8)
