"""A socket in doubt is never reused; an agent is never silently shared across event loops."""

from __future__ import annotations

import anyio
import pytest
from helpers import assert_settled
from servers import RawConnection, RawServer, UvicornServer, response_bytes, wait_until

from starlette_agent import Agent, AgentClosed, AgentError, RemoteProtocolError

pytestmark = pytest.mark.anyio


async def test_bytes_after_a_response_condemn_the_socket(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            # One response, then a stray second one the client never asked for: reusing this
            # socket would hand the stray response to the next request.
            await conn.send(response_bytes(b"first") + response_bytes(b"stray"))

    raw_server.handler = handler
    async with Agent() as agent:
        first = await agent.get(raw_server.url)
        second = await agent.get(raw_server.url)
        assert (first.content, second.content) == (b"first", b"first")
        assert second.reused_socket is False
        assert raw_server.stats.opened == 2
        assert agent.stats().connections_reused == 0


async def test_aclose_fails_in_flight_requests_with_agent_closed(server: UvicornServer) -> None:
    agent = Agent()
    failures: list[BaseException] = []

    async def in_flight() -> None:
        try:
            await agent.get(f"{server.url}/slow?delay=5")
        except AgentError as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            assert await wait_until(lambda: server.stats.requests == 1)
            await agent.aclose()
    assert len(failures) == 1 and isinstance(failures[0], AgentClosed)
    assert server.origin in str(failures[0])
    assert await wait_until(lambda: server.stats.open == 0)
    assert_settled(agent)


async def test_an_agent_with_sockets_refuses_another_event_loop(server: UvicornServer) -> None:
    async with Agent() as agent:
        await agent.get(f"{server.url}/peer")

        async def from_another_loop() -> None:
            with pytest.raises(AgentError, match="another event loop"):
                await agent.get(f"{server.url}/peer")

        await anyio.to_thread.run_sync(anyio.run, from_another_loop)
        assert server.stats.opened == 1  # the refused request opened nothing
        assert (await agent.get(f"{server.url}/peer")).reused_socket is True


def test_an_agent_without_sockets_moves_to_a_new_event_loop(server: UvicornServer) -> None:
    agent = Agent(keep_alive=False)

    async def use() -> int:
        return (await agent.get(f"{server.url}/peer")).status

    assert anyio.run(use) == 200
    assert anyio.run(use, backend="trio") == 200
    assert server.stats.opened == 2


def test_pool_key_cache_is_bounded() -> None:
    import ssl
    import tracemalloc

    agent = Agent()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for port in range(1, 5001):
            agent.get_name(f"http://127.0.0.1:{port}/")
        for _ in range(2000):
            # A new context per request, as some code does: each is a new TLS identity.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            agent.get_name("https://127.0.0.1/", ssl_context=context)
        gc_collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 7,000 distinct keys took 3.7 MB when nothing was forgotten.
    assert grown < 1_500_000, grown


def gc_collect() -> None:
    import gc

    gc.collect()


async def test_a_fresh_socket_closed_without_an_answer_is_a_remote_protocol_error(
    raw_server: RawServer,
) -> None:
    async def hang_up(conn: RawConnection) -> None:
        await conn.read_request()

    raw_server.handler = hang_up
    async with Agent() as agent:
        with pytest.raises(RemoteProtocolError) as caught:
            await agent.get(raw_server.url)
        # The agent's private retry signal never reaches callers.
        assert type(caught.value) is RemoteProtocolError
        assert raw_server.origin in str(caught.value)
