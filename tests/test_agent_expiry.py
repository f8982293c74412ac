"""Idle expiry and the server's Keep-Alive hint (issue 2, behaviour 4)."""

from __future__ import annotations

import anyio
import pytest
from servers import UvicornServer, wait_until

from starlette_agent import Agent

pytestmark = pytest.mark.anyio


async def test_idle_socket_is_closed_after_idle_timeout(server: UvicornServer) -> None:
    async with Agent(idle_timeout=0.3) as agent:
        await agent.get(f"{server.url}/peer")
        assert agent.stats().idle == 1
        # The agent closes it by itself, without another request coming along.
        assert await wait_until(lambda: server.stats.closed == 1, timeout=3)
        assert await wait_until(lambda: agent.stats().idle == 0)
        stats = agent.stats()
        assert stats.idle_timeouts == 1
        assert stats.connections_closed == 1
        response = await agent.get(f"{server.url}/peer")
        assert response.reused_socket is False
        assert server.stats.opened == 2


async def test_idle_socket_within_idle_timeout_is_reused(server: UvicornServer) -> None:
    async with Agent(idle_timeout=2.0) as agent:
        await agent.get(f"{server.url}/peer")
        await anyio.sleep(0.3)
        response = await agent.get(f"{server.url}/peer")
        assert response.reused_socket is True
        assert server.stats.opened == 1
        assert agent.stats().idle_timeouts == 0


async def test_expired_socket_is_never_reused_even_if_the_reaper_is_late(
    server: UvicornServer,
) -> None:
    async with Agent(idle_timeout=0.2) as agent:
        await agent.get(f"{server.url}/peer")
        await anyio.sleep(0.4)
        response = await agent.get(f"{server.url}/peer")
        assert response.reused_socket is False
        assert server.stats.opened == 2


@pytest.mark.parametrize("hint", ["timeout=2", "max=100, timeout=2"])
async def test_keep_alive_hint_shortens_the_idle_timeout(server: UvicornServer, hint: str) -> None:
    query = "timeout=2&max=100" if hint.startswith("max") else "timeout=2"
    async with Agent(idle_timeout=30, keep_alive_timeout_buffer=1.0) as agent:
        response = await agent.get(f"{server.url}/keepalive-hint?{query}")
        assert response.headers["keep-alive"] == hint
        await anyio.sleep(0.2)
        assert server.stats.closed == 0
        assert agent.stats().idle == 1
        # 2 s hint - 1 s buffer: closed after about 1 s, far before idle_timeout.
        assert await wait_until(lambda: server.stats.closed == 1, timeout=4)
        assert agent.stats().idle == 0


@pytest.mark.parametrize("timeout", ["1", "0"])
async def test_keep_alive_hint_at_or_below_buffer_means_not_kept(
    server: UvicornServer, timeout: str
) -> None:
    async with Agent(idle_timeout=30, keep_alive_timeout_buffer=1.0) as agent:
        response = await agent.get(f"{server.url}/keepalive-hint?timeout={timeout}")
        assert response.status == 200
        assert agent.stats().idle == 0
        assert await wait_until(lambda: server.stats.closed == 1, timeout=2)
        second = await agent.get(f"{server.url}/peer")
        assert second.reused_socket is False
        assert server.stats.opened == 2


async def test_keep_alive_hint_longer_than_idle_timeout_does_not_extend_it(
    server: UvicornServer,
) -> None:
    async with Agent(idle_timeout=0.3) as agent:
        await agent.get(f"{server.url}/keepalive-hint?timeout=60")
        assert await wait_until(lambda: server.stats.closed == 1, timeout=3)
