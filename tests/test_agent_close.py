"""aclose(), the global agent and one-shot requests (issue 2, behaviour 12)."""

from __future__ import annotations

import contextlib

import anyio
import pytest
from helpers import assert_settled
from servers import UvicornServer, wait_until

from starlette_agent import Agent, AgentClosed, AgentError, global_agent, request

pytestmark = pytest.mark.anyio


async def test_aclose_closes_every_socket(server: UvicornServer, server2: UvicornServer) -> None:
    agent = Agent()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(agent.get, f"{server.url}/slow?delay=0.1")
        tg.start_soon(agent.get, f"{server2.url}/peer")
    assert server.stats.open == 3
    assert agent.stats().idle == 4
    await agent.aclose()
    assert await wait_until(lambda: server.stats.open == 0 and server2.stats.open == 0)
    assert server.stats.closed == 3
    assert server2.stats.closed == 1
    assert agent.stats().idle == 0
    with pytest.raises(AgentClosed):
        await agent.get(f"{server.url}/peer")
    assert server.stats.opened == 3
    await agent.aclose()  # closing twice is fine


async def test_async_with_closes_the_agent(server: UvicornServer) -> None:
    async with Agent() as agent:
        await agent.get(f"{server.url}/peer")
    assert await wait_until(lambda: server.stats.closed == 1)
    with pytest.raises(AgentClosed):
        await agent.get(f"{server.url}/peer")


async def test_aclose_fails_queued_requests(server: UvicornServer) -> None:
    agent = Agent(max_sockets=1)
    outcomes: list[object] = []

    async def queued() -> None:
        try:
            await agent.get(f"{server.url}/peer")
        except AgentError as exc:
            outcomes.append(exc)
        else:
            outcomes.append("ok")

    async def active() -> None:
        with contextlib.suppress(AgentError):
            await agent.get(f"{server.url}/slow?delay=0.5")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(active)
            assert await wait_until(lambda: agent.stats().active == 1)
            tg.start_soon(queued)
            assert await wait_until(lambda: agent.stats().queued == 1)
            await agent.aclose()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], AgentClosed)
    assert_settled(agent)
    assert await wait_until(lambda: server.stats.open == 0)
    assert server.stats.opened == 1


async def test_global_agent_is_one_per_event_loop_and_renewed_after_close(
    server: UvicornServer,
) -> None:
    agent = global_agent()
    try:
        assert global_agent() is agent
        response = await request("GET", f"{server.url}/peer")
        assert response.status == 200
        assert agent.stats().requests == 1
        await request("GET", f"{server.url}/peer", agent=None)
        assert agent.stats().connections_reused == 1
    finally:
        await agent.aclose()
    fresh = global_agent()
    try:
        assert fresh is not agent
        assert (await request("GET", f"{server.url}/peer")).status == 200
        assert fresh.stats().requests == 1
    finally:
        await fresh.aclose()


async def test_agent_false_is_a_one_shot_connection(server: UvicornServer) -> None:
    default = global_agent()
    try:
        for _ in range(3):
            response = await request("GET", f"{server.url}/echo", agent=False)
            assert response.json()["connection"] == "close"
        assert server.stats.opened == 3
        assert await wait_until(lambda: server.stats.closed == 3)
        assert default.stats().requests == 0
    finally:
        await default.aclose()


async def test_request_with_an_explicit_agent(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await request("POST", f"{server.url}/echo", agent=agent, json={"k": 1})
        assert response.json()["method"] == "POST"
        assert agent.stats().requests == 1
        assert server.stats.opened == 1


def test_global_agent_differs_between_event_loops() -> None:
    async def grab() -> Agent:
        agent = global_agent()
        await agent.aclose()
        return agent

    first = anyio.run(grab)
    second = anyio.run(grab)
    assert first is not second


async def test_wait_idle_returns_when_the_last_request_ends(server: UvicornServer) -> None:
    async with Agent() as agent:
        await agent.wait_idle()  # nothing in flight: at once
        finished: list[str] = []

        async def call(delay: float) -> None:
            await agent.get(f"{server.url}/slow?delay={delay}")
            finished.append(f"call {delay}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 0.2)
            tg.start_soon(call, 0.4)
            assert await wait_until(lambda: agent.stats().active == 2)
            with anyio.fail_after(5):
                await agent.wait_idle()
            finished.append("idle")
        assert finished == ["call 0.2", "call 0.4", "idle"]
        assert agent.stats().idle == 2


async def test_wait_idle_waits_for_an_open_stream(server: UvicornServer) -> None:
    async with Agent() as agent:
        order: list[str] = []

        async def waiter() -> None:
            await agent.wait_idle()
            order.append("idle")

        stream = agent.stream("GET", f"{server.url}/bytes/10")
        async with stream as response, anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.1)
            order.append("reading")
            await response.aread()
        assert order == ["reading", "idle"]
