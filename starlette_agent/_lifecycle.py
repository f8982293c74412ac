"""How agents are closed at shutdown: wait until they are idle, bounded, then close them.

Who closes an agent, and when, is decided by its ``AgentRegistry`` (the one count of who still
uses it); this module only carries the closing out. Both steps run shielded: shutdown is the
last chance to close these sockets, and a cancelled lifespan must not skip it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["close_all", "close_gracefully"]

logger = logging.getLogger("starlette_agent")


async def close_gracefully(
    agents: Sequence[Agent], *, timeout: float | None, keep: Callable[[Agent], bool]
) -> None:
    """Wait up to ``timeout`` seconds (None: for ever) for ``agents`` to be idle, then close them.

    Waiting is ``Agent.wait_idle()``: no request in flight or queued. One deadline covers all
    agents, so N agents never take N timeouts. An agent for which ``keep(agent)`` is true once
    the wait is over (its owner opened it again meanwhile) stays open. A close that fails is
    logged and the others still close; the first such error is raised at the end.
    """
    if not agents:
        return
    first_error: BaseException | None = None
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(math.inf if timeout is None else timeout) as waited:
            for agent in agents:
                await agent.wait_idle()
        if waited.cancelled_caught:
            logger.warning(
                "closing agents still busy after %ss: %s", timeout, ", ".join(map(repr, agents))
            )
        for agent in agents:
            if keep(agent):
                continue
            try:
                await agent.aclose()
            except Exception as exc:
                logger.exception("closing %r failed", agent)
                first_error = first_error or exc
    if first_error is not None:
        raise first_error


async def close_all(closes: Sequence[Callable[[], Awaitable[object]]]) -> list[Exception]:
    """Run every close at once, shielded, so their waits overlap; answer the errors they raised."""
    errors: list[Exception] = []

    async def run(close: Callable[[], Awaitable[object]]) -> None:
        try:
            await close()
        except Exception as exc:
            errors.append(exc)

    with anyio.CancelScope(shield=True):
        if len(closes) == 1:
            # Inline: a close that only gives back a use (another app still holds the agents)
            # then completes without yielding, so co-hosted apps stop in a predictable order.
            await run(closes[0])
        else:
            async with anyio.create_task_group() as tg:
                for close in closes:
                    tg.start_soon(run, close)
    return errors
