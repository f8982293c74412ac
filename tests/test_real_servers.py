"""The agent against real servers nobody here wrote (nginx, hypercorn), counted server-side."""

from __future__ import annotations

import anyio
import pytest
from helpers import assert_settled
from real_servers import HypercornServer, NginxServer
from servers import wait_until

from starlette_agent import Agent

pytestmark = pytest.mark.anyio

RealServer = NginxServer | HypercornServer


@pytest.fixture(params=["nginx", "hypercorn"])
def real_server(request: pytest.FixtureRequest) -> RealServer:
    server: RealServer = request.getfixturevalue(f"{request.param}_server")
    return server


async def _peer_port(agent: Agent, server: RealServer) -> int:
    response = await agent.get(f"{server.url}/peer")
    assert response.status == 200
    # nginx answers the port as text, hypercorn (echo_app) as JSON.
    return int(response.text) if isinstance(server, NginxServer) else response.json()["port"]


async def test_sequential_requests_share_one_connection(real_server: RealServer) -> None:
    async with Agent() as agent:
        ports = {await _peer_port(agent, real_server) for _ in range(50)}
        assert await wait_until(lambda: real_server.stats.requests == 50)
        assert len(ports) == 1
        assert real_server.stats.opened == 1
        assert set(real_server.stats.request_ports) == ports
        stats = agent.stats()
        assert (stats.connections_created, stats.connections_reused) == (1, 49)
        assert stats.errors == 0


async def test_max_sockets_bounds_the_connections_the_server_sees(
    real_server: RealServer,
) -> None:
    statuses: list[int] = []

    async def get() -> None:
        statuses.append((await agent.get(f"{real_server.url}/peer")).status)

    async with Agent(max_sockets=4) as agent:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(get)
        assert statuses == [200] * 100
        assert await wait_until(lambda: real_server.stats.requests == 100)
        assert 1 <= real_server.stats.opened <= 4
        assert agent.stats().connections_created == real_server.stats.opened
        assert agent.stats().errors == 0
        assert_settled(agent)


async def test_connection_closed_by_the_server_while_idle_is_not_an_error(
    real_server: RealServer,
) -> None:
    server_idle_timeout = (
        real_server.keepalive_timeout
        if isinstance(real_server, NginxServer)
        else real_server.keep_alive_timeout
    )
    async with Agent(idle_timeout=30) as agent:
        first = await _peer_port(agent, real_server)
        await anyio.sleep(server_idle_timeout + 0.8)  # the server has closed the idle socket
        second = await _peer_port(agent, real_server)
        assert second != first
        assert await wait_until(lambda: real_server.stats.requests == 2)
        assert real_server.stats.opened == 2
        stats = agent.stats()
        assert stats.errors == 0
        # Found closed before reuse, or failed on reuse and retried: at most one retry.
        assert stats.retries <= 1
        assert stats.connections_created == 2


async def test_nginx_closing_after_keepalive_requests_is_not_an_error(
    nginx_server: NginxServer,
) -> None:
    count = 250
    async with Agent() as agent:
        for _ in range(count):
            assert (await agent.get(f"{nginx_server.url}/peer")).status == 200
        assert await wait_until(lambda: nginx_server.stats.requests == count)
        # nginx answers the 100th request of a connection with Connection: close.
        assert nginx_server.keepalive_requests == 100
        assert sorted(nginx_server.stats.connections.values()) == [50, 100, 100]
        assert nginx_server.stats.opened == 3
        stats = agent.stats()
        assert stats.errors == 0
        assert stats.retries == 0  # the agent heeded Connection: close, not a dead socket
        assert stats.connections_created == 3
        assert stats.requests == count


async def test_nginx_static_files_arrive_whole(nginx_server: NginxServer) -> None:
    async with Agent() as agent:
        for size in (0, 1, 65_536, 1_000_003):
            response = await agent.get(nginx_server.file_url(size))
            assert response.status == 200
            assert response.content == b"x" * size
        # nginx sends 8 KB at once, the rest a second later.
        slow = await agent.get(nginx_server.file_url(12_000, slow=True))
        assert slow.content == b"x" * 12_000
        assert await wait_until(lambda: nginx_server.stats.requests == 5)
        assert nginx_server.stats.opened == 1
        assert nginx_server.stats.statuses == [200] * 5
