"""Small helpers shared by the agent behaviour tests (public API only)."""

from __future__ import annotations

from typing import Any

import anyio

from starlette_agent import Agent


def origin_stats(agent: Agent, url: str) -> Any:
    """The ``OriginStats`` of ``url``'s pool, or ``None`` when the agent holds nothing for it."""
    return agent.stats().origins.get(agent.get_name(url))


def assert_settled(agent: Agent) -> None:
    """No request is in flight or queued: nothing was orphaned."""
    stats = agent.stats()
    assert stats.active == 0, stats.as_dict()
    assert stats.queued == 0, stats.as_dict()


async def assert_pool_works(
    agent: Agent,
    url: str,
    count: int = 1000,
    concurrency: int = 50,
    timeout: float | None = None,
) -> None:
    """``count`` GETs to ``url`` through ``agent``, ``concurrency`` at a time, all succeed.

    ``timeout`` overrides the agent's timeouts for these requests (an agent built with a tight
    read timeout for its own test need not time out here under load)."""
    statuses: list[int] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            response = await agent.get(url, timeout=timeout)
            statuses.append(response.status)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    assert statuses == [200] * count
    assert_settled(agent)
