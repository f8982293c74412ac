"""Who may close an agent, and how: leases counted across apps, and a graceful close.

Several apps in one process (two ``uvicorn.Server``s in one event loop) may be handed the same
``Agent`` instance, the same registry, or the process-wide ``global_agent()``. Each app's
lifespan takes a *lease* on such an agent at startup and returns it at shutdown; the agent is
closed when the last lease is returned, so the first app to stop never pulls sockets from under
the others.

Leases are counted synchronously (no await between reading and writing a count), so two
lifespans starting or stopping concurrently in one event loop cannot miss each other. Agents
belong to one event loop; so do leases.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from ._errors import AgentClosed

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["acquire", "close_gracefully", "lease_count", "release"]

logger = logging.getLogger("starlette_agent")

#: id(agent) -> (agent, number of lifespans holding it). Keyed by id: an Agent may define __eq__.
_leases: dict[int, tuple[Agent, int]] = {}

#: How often the graceful close looks at the in-flight count.
_POLL_INTERVAL = 0.02


def acquire(agent: Agent, *, owner: str) -> None:
    """Take a lease on ``agent`` for ``owner`` (named in the error if the agent is closed)."""
    if agent.closed:
        raise AgentClosed(
            f"{owner} was given an agent that is already closed: {agent!r}. An agent instance "
            f"serves one lifespan; to restart an app, give it settings or an AgentRegistry, "
            f"which create a fresh agent at each startup"
        )
    _, count = _leases.get(id(agent), (agent, 0))
    _leases[id(agent)] = (agent, count + 1)


def release(agents: Sequence[Agent]) -> list[Agent]:
    """Return one lease on each of ``agents``; answer those whose last lease this was.

    The caller closes the answered agents (``close_gracefully``); they are already forgotten.
    """
    to_close: list[Agent] = []
    for agent in agents:
        _, count = _leases.get(id(agent), (agent, 1))
        if count <= 1:
            _leases.pop(id(agent), None)
            to_close.append(agent)
        else:
            _leases[id(agent)] = (agent, count - 1)
    return to_close


def lease_count(agent: Agent) -> int:
    """How many lifespans hold ``agent`` right now."""
    return _leases.get(id(agent), (agent, 0))[1]


async def close_gracefully(agents: Sequence[Agent], *, timeout: float | None) -> None:
    """Wait up to ``timeout`` seconds for in-flight requests on ``agents`` to end, then close them.

    An agent leased again during the wait is left open: its new holder closes it later.

    One deadline covers all agents, so N agents never take N timeouts. Runs shielded: shutdown
    is the last chance to close these sockets, and a cancelled lifespan must not skip it. A close
    that fails is logged and the others still close; the first such error is raised at the end.
    """
    if not agents:
        return
    first_error: BaseException | None = None
    with anyio.CancelScope(shield=True):
        wait = math.inf if timeout is None else timeout
        with anyio.move_on_after(wait) as waited:
            while any(_in_flight(agent) for agent in agents):
                await anyio.sleep(_POLL_INTERVAL)
        if waited.cancelled_caught:
            busy = {repr(agent): _in_flight(agent) for agent in agents if _in_flight(agent)}
            logger.warning(
                "closing agents with requests still in flight after %ss: %s", timeout, busy
            )
        for agent in agents:
            if lease_count(agent):
                # An app started while we waited and took the agent again (the global agent
                # is handed out until it is closed): it is in use, so it stays open.
                continue
            try:
                await agent.aclose()
            except Exception as exc:
                logger.exception("closing %r failed", agent)
                first_error = first_error or exc
    if first_error is not None:
        raise first_error


def _in_flight(agent: Agent) -> int:
    """Requests the agent is serving now (holding or waiting for a socket)."""
    stats = agent.stats()
    return int(stats.active + stats.queued)
