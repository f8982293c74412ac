"""Sockets belong to an event loop, and end with it: a finished loop keeps nothing alive."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable

import pytest
import trio
import uvloop
from servers import UvicornServer, wait_until_sync

from starlette_agent import Agent, request

Runner = Callable[[Callable[[], Awaitable[None]]], None]


def _asyncio(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def _uvloop(main: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(main())  # type: ignore[arg-type]


def _trio(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main)


def _loop_identity() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return trio.lowlevel.current_trio_token()


RUNNERS = [pytest.param(_asyncio, id="asyncio"), pytest.param(_uvloop, id="uvloop")]
RUNNERS.append(pytest.param(_trio, id="trio"))


@pytest.mark.parametrize("run", RUNNERS)
def test_each_loop_global_agent_closes_its_sockets_when_the_loop_ends(
    server: UvicornServer, run: Runner
) -> None:
    loops: list[weakref.ref[object]] = []

    async def main() -> None:
        loops.append(weakref.ref(_loop_identity()))
        response = await request("GET", f"{server.url}/peer")
        assert response.status == 200

    for _ in range(50):
        run(main)
    assert server.stats.opened == 50
    # The server saw every socket closed: none stayed open for the life of the process.
    assert wait_until_sync(lambda: server.stats.open == 0), server.stats
    gc.collect()
    assert [ref for ref in loops if ref() is not None] == []


@pytest.mark.parametrize("run", RUNNERS)
def test_an_agent_of_ours_is_usable_on_the_next_loop(server: UvicornServer, run: Runner) -> None:
    agent = Agent(idle_timeout=None)
    statuses: list[int] = []

    async def main() -> None:
        statuses.append((await agent.get(f"{server.url}/peer")).status)
        assert agent.stats().idle == 1

    for _ in range(3):
        run(main)
    assert statuses == [200, 200, 200]
    assert not agent.closed
    assert agent.stats().idle == 0  # the ended loop's socket was closed with it
    assert wait_until_sync(lambda: server.stats.open == 0), server.stats
