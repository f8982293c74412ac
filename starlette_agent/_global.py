"""The default agent (Node's ``http.globalAgent``) and the one-call ``request()``.

Sockets belong to the event loop that opened them, so there is one global agent per running
event loop rather than one per process: two servers on one loop share it, as two Node servers in
one process share ``http.globalAgent``. When that loop ends, its global agent closes its sockets
and is forgotten, so a process that runs many loops one after another keeps none of them.
"""

from __future__ import annotations

import weakref
from typing import Literal, Unpack

from ._agent import Agent
from ._arguments import RequestArgs
from ._errors import AgentError, InvalidOptionType
from ._eventloop import current_loop
from ._response import Response

_global_agents: weakref.WeakKeyDictionary[object, Agent] = weakref.WeakKeyDictionary()


def global_agent() -> Agent:
    """The default agent of the running event loop; a fresh one if the last was closed."""
    try:
        loop = current_loop()
    except RuntimeError:
        raise AgentError(
            "global_agent() needs a running event loop: call it from async code"
        ) from None
    agent = _global_agents.get(loop)
    if agent is None or agent.closed:
        agent = _global_agents[loop] = Agent()
        # Its sockets, and the agent itself, end with the loop: nothing else could close them.
        agent._ends_with_loop = True
    return agent


async def request(
    method: str,
    url: str,
    *,
    agent: Agent | Literal[False] | None = None,
    **arguments: Unpack[RequestArgs],
) -> Response:
    """Send one request and read its response. ``agent=None``: the global agent;
    ``agent=False``: a one-shot socket, sent with ``Connection: close`` and closed after the
    response; or an ``Agent`` of yours. The arguments are ``Agent.request``'s.
    """
    if agent is None:
        return await global_agent().request(method, url, **arguments)
    if agent is False:
        async with Agent(keep_alive=False) as one_shot:
            return await one_shot.request(method, url, **arguments)
    if not isinstance(agent, Agent):
        raise InvalidOptionType(f"agent must be an Agent, None or False, got {agent!r}")
    return await agent.request(method, url, **arguments)
