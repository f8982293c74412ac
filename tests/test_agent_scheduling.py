"""lifo and fifo choice of idle socket (issue 2, behaviour 3), seen from the client port."""

from __future__ import annotations

import anyio
import pytest
from servers import UvicornServer

from starlette_agent import Agent

pytestmark = pytest.mark.anyio


async def _free_three_sockets_in_order(agent: Agent, server: UvicornServer) -> list[int]:
    """Open three sockets freed 0.1 s apart; return their client ports, first freed first."""
    ports: dict[float, int] = {}

    async def peer(delay: float) -> None:
        response = await agent.get(f"{server.url}/peer?delay={delay}")
        ports[delay] = response.json()["port"]

    async with anyio.create_task_group() as tg:
        for delay in (0.1, 0.2, 0.3):
            tg.start_soon(peer, delay)
    assert server.stats.opened == 3
    assert agent.stats().idle == 3
    return [ports[0.1], ports[0.2], ports[0.3]]


async def test_lifo_reuses_the_most_recently_freed_socket(server: UvicornServer) -> None:
    async with Agent(scheduling="lifo") as agent:
        freed = await _free_three_sockets_in_order(agent, server)
        for _ in range(3):
            response = await agent.get(f"{server.url}/peer")
            assert response.json()["port"] == freed[-1]
            assert response.reused_socket is True
        assert server.stats.opened == 3


async def test_fifo_reuses_the_oldest_freed_socket(server: UvicornServer) -> None:
    async with Agent(scheduling="fifo") as agent:
        freed = await _free_three_sockets_in_order(agent, server)
        seen = [(await agent.get(f"{server.url}/peer")).json()["port"] for _ in range(4)]
        # Each reused socket goes to the back of the line: round robin, oldest first.
        assert seen == [freed[0], freed[1], freed[2], freed[0]]
        assert server.stats.opened == 3


@pytest.mark.parametrize("scheduling", ["LIFO", "random", "", None, 1])
def test_unknown_scheduling_is_rejected_at_construction(scheduling: object) -> None:
    with pytest.raises((ValueError, TypeError), match="scheduling"):
        Agent(scheduling=scheduling)  # type: ignore[arg-type]


def test_unknown_scheduling_string_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="scheduling"):
        Agent(scheduling="random")  # type: ignore[arg-type]
