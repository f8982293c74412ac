"""max_sockets, max_total_sockets and max_free_sockets (issue 2, behaviour 2)."""

from __future__ import annotations

import anyio
import pytest
from helpers import assert_settled, origin_stats
from servers import ServerStats, UvicornServer, wait_until

from starlette_agent import Agent

pytestmark = pytest.mark.anyio


async def _burst(agent: Agent, url: str, count: int) -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await agent.get(url)).status)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    return statuses


async def test_max_sockets_bounds_concurrent_connections(server: UvicornServer) -> None:
    async with Agent(max_sockets=5) as agent:
        url = f"{server.url}/slow?delay=0.01"
        statuses = await _burst(agent, url, 200)
        assert statuses == [200] * 200
        assert server.stats.requests == 200
        assert server.stats.max_open == 5
        assert server.stats.max_in_flight <= 5  # how many overlap at once is up to timing
        assert server.stats.opened == 5
        assert_settled(agent)
        pool = origin_stats(agent, url)
        assert (pool.active, pool.idle, pool.queued) == (0, 5, 0)


async def test_queue_is_visible_in_stats(server: UvicornServer) -> None:
    async with Agent(max_sockets=1) as agent:
        url = f"{server.url}/slow?delay=0.3"
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(agent.get, url)
            assert await wait_until(lambda: agent.stats().queued == 2)
            pool = origin_stats(agent, url)
            assert (pool.active, pool.queued) == (1, 2)
            assert "2 queued" in repr(agent)
        assert server.stats.opened == 1
        assert_settled(agent)


async def test_max_total_sockets_holds_across_origins(
    server: UvicornServer, server2: UvicornServer
) -> None:
    combined = ServerStats()
    server.stats.link(combined)
    server2.stats.link(combined)
    async with Agent(max_total_sockets=4) as agent:
        statuses: list[int] = []

        async def one(url: str) -> None:
            statuses.append((await agent.get(url)).status)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(one, f"{server.url}/slow?delay=0.01")
                    tg.start_soon(one, f"{server2.url}/slow?delay=0.01")
        assert statuses == [200] * 200
        assert server.stats.requests == 100
        assert server2.stats.requests == 100
        assert combined.max_in_flight <= 4
        assert combined.max_in_flight >= 2
        assert combined.max_open <= 4
        assert_settled(agent)
        assert agent.stats().idle <= 4


async def test_max_sockets_and_max_total_sockets_together(
    server: UvicornServer, server2: UvicornServer
) -> None:
    async with Agent(max_sockets=2, max_total_sockets=3) as agent:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_burst, agent, f"{server.url}/slow?delay=0.01", 50)
                tg.start_soon(_burst, agent, f"{server2.url}/slow?delay=0.01", 50)
        assert server.stats.max_open <= 2
        assert server2.stats.max_open <= 2
        assert server.stats.max_in_flight + server2.stats.max_in_flight <= 4
        assert server.stats.requests == server2.stats.requests == 50
        assert_settled(agent)


async def test_idle_sockets_beyond_max_free_sockets_are_closed(server: UvicornServer) -> None:
    async with Agent(max_free_sockets=2) as agent:
        statuses = await _burst(agent, f"{server.url}/slow?delay=0.2", 10)
        assert statuses == [200] * 10
        assert server.stats.opened == 10
        assert await wait_until(lambda: server.stats.closed == 8)
        assert server.stats.open == 2
        assert agent.stats().idle == 2
        # The two kept sockets are reused.
        await _burst(agent, f"{server.url}/peer", 2)
        assert server.stats.opened == 10


async def test_max_free_sockets_zero_keeps_nothing(server: UvicornServer) -> None:
    async with Agent(max_free_sockets=0) as agent:
        for _ in range(3):
            await agent.get(f"{server.url}/peer")
        assert server.stats.opened == 3
        assert await wait_until(lambda: server.stats.closed == 3)
        assert agent.stats().idle == 0


async def test_idle_socket_of_one_origin_yields_to_another_origin_under_total_limit(
    server: UvicornServer, server2: UvicornServer
) -> None:
    async with Agent(max_total_sockets=1, pool_timeout=5) as agent:
        await agent.get(f"{server.url}/peer")
        assert agent.stats().idle == 1
        # The only slot is held by an idle socket of the first origin: it must be closed to
        # make room, not block the second origin until pool_timeout.
        with anyio.fail_after(3):
            response = await agent.get(f"{server2.url}/peer")
        assert response.status == 200
        assert await wait_until(lambda: server.stats.closed == 1)
        assert agent.stats().idle == 1
