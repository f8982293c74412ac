"""Longer load runs: ``-m soak`` only. Their small CI versions live in the topic files."""

from __future__ import annotations

import random

import anyio
import pytest
from helpers import assert_pool_works, assert_settled
from servers import ServerStats, UvicornServer

from starlette_agent import Agent, AgentError

pytestmark = [pytest.mark.anyio, pytest.mark.soak]


async def test_soak_cancellations_and_timeouts_under_load(server: UvicornServer) -> None:
    rng = random.Random(1234)
    async with Agent(max_sockets=8, read_timeout=0.05) as agent:
        most_sockets = 0
        outcomes = {"ok": 0, "cancelled": 0, "error": 0}

        async def one(delay: float, slow: float) -> None:
            nonlocal most_sockets
            with anyio.move_on_after(delay) as scope:
                try:
                    await agent.get(f"{server.url}/slow?delay={slow}")
                    outcomes["ok"] += 1
                except AgentError:
                    outcomes["error"] += 1
            if scope.cancelled_caught:
                outcomes["cancelled"] += 1
            stats = agent.stats()
            most_sockets = max(most_sockets, stats.active + stats.idle)

        for _ in range(20):
            async with anyio.create_task_group() as tg:
                for _ in range(500):
                    tg.start_soon(one, rng.uniform(0, 0.1), rng.choice([0, 0.001, 0.1]))
            assert_settled(agent)
        assert most_sockets <= 8
        assert outcomes["ok"] > 0 and outcomes["cancelled"] > 0
        await assert_pool_works(
            agent, f"{server.url}/peer", count=10_000, concurrency=100, timeout=10
        )


async def test_soak_many_origins_under_a_total_limit(
    server: UvicornServer, server2: UvicornServer
) -> None:
    combined = ServerStats()
    server.stats.link(combined)
    server2.stats.link(combined)
    async with Agent(max_total_sockets=6, max_sockets=4) as agent:
        rng = random.Random(99)
        urls = [f"{server.url}/peer", f"{server2.url}/peer", f"{server.url}/slow?delay=0.005"]

        async def one() -> None:
            assert (await agent.get(rng.choice(urls))).status == 200

        with anyio.fail_after(300):
            for _ in range(20):
                async with anyio.create_task_group() as tg:
                    for _ in range(1000):
                        tg.start_soon(one)
        assert_settled(agent)
        assert server.stats.requests + server2.stats.requests == 20_000
        assert combined.max_in_flight <= 6
        assert server.stats.max_in_flight <= 4
        assert server2.stats.max_in_flight <= 4
        assert agent.stats().idle <= 6
