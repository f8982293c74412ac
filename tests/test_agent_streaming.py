"""Streamed responses: left early, the socket closes; read to the end, it returns (behaviour 7)."""

from __future__ import annotations

import anyio
import pytest
from helpers import assert_settled
from servers import UvicornServer, wait_until

from starlette_agent import Agent, StreamClosed

pytestmark = pytest.mark.anyio


async def test_streamed_response_left_early_closes_its_socket(server: UvicornServer) -> None:
    async with Agent() as agent:
        async with agent.stream("GET", f"{server.url}/stream/1000?interval=0.001") as response:
            assert response.status == 200
            async for chunk in response.aiter_bytes():
                assert chunk
                break
            assert agent.stats().active == 1
        assert_settled(agent)
        assert agent.stats().idle == 0
        assert await wait_until(lambda: server.stats.closed == 1)
        next_response = await agent.get(f"{server.url}/peer")
        assert next_response.reused_socket is False
        assert server.stats.opened == 2


async def test_streamed_response_read_to_the_end_returns_its_socket(
    server: UvicornServer,
) -> None:
    async with Agent() as agent:
        chunks: list[bytes] = []
        async with agent.stream("GET", f"{server.url}/stream/20") as response:
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
        assert b"".join(chunks) == b"".join(f"chunk-{i}\n".encode() for i in range(20))
        assert agent.stats().idle == 1
        next_response = await agent.get(f"{server.url}/peer")
        assert next_response.reused_socket is True
        assert server.stats.opened == 1


async def test_stream_aread_then_content(server: UvicornServer) -> None:
    async with Agent() as agent:
        async with agent.stream("GET", f"{server.url}/bytes/5000") as response:
            body = await response.aread()
            assert body == b"x" * 5000
            assert response.content == body
        assert agent.stats().idle == 1


async def test_leaving_a_stream_frees_the_slot_for_a_queued_request(
    server: UvicornServer,
) -> None:
    async with Agent(max_sockets=1, pool_timeout=5) as agent:
        result: list[int] = []

        async def queued() -> None:
            result.append((await agent.get(f"{server.url}/peer")).status)

        url = f"{server.url}/stream/1000?interval=0.001"
        async with anyio.create_task_group() as tg, agent.stream("GET", url) as resp:
            assert resp.status == 200  # body not read: the socket stays in use
            tg.start_soon(queued)
            assert await wait_until(lambda: agent.stats().queued == 1)
        assert result == [200]
        assert_settled(agent)
        assert server.stats.opened == 2


async def test_stream_aclose_before_reading(server: UvicornServer) -> None:
    async with Agent() as agent:
        async with agent.stream("GET", f"{server.url}/bytes/100000") as response:
            await response.aclose()
        assert_settled(agent)
        assert (await agent.get(f"{server.url}/peer")).status == 200


async def test_exception_inside_stream_block_closes_the_socket(server: UvicornServer) -> None:
    async with Agent() as agent:
        with pytest.raises(KeyError):
            async with agent.stream("GET", f"{server.url}/stream/1000?interval=0.001"):
                raise KeyError("boom")
        assert_settled(agent)
        assert await wait_until(lambda: server.stats.closed == 1)


async def test_reading_a_closed_stream_raises_stream_closed(server: UvicornServer) -> None:
    async with Agent() as agent:
        async with agent.stream("GET", f"{server.url}/bytes/5000") as response:
            pass
        with pytest.raises(StreamClosed, match="closed"):
            await response.aread()
        with pytest.raises(StreamClosed):
            async for _ in response.aiter_bytes():
                pass  # pragma: no cover
        assert_settled(agent)


async def test_reading_a_consumed_stream_again_raises_stream_closed(server: UvicornServer) -> None:
    async with Agent() as agent, agent.stream("GET", f"{server.url}/stream/3") as response:
        chunks = [chunk async for chunk in response.aiter_bytes()]
        assert b"".join(chunks) == b"chunk-0\nchunk-1\nchunk-2\n"
        with pytest.raises(StreamClosed, match="already read"):
            await response.aread()


async def test_a_buffered_body_stays_readable(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/bytes/10")
        assert await response.aread() == b"x" * 10
        await response.aclose()
        assert await response.aread() == b"x" * 10
        assert response.content == b"x" * 10
        assert [chunk async for chunk in response.aiter_bytes()] == [b"x" * 10]
