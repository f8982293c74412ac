"""The default agent (Node's ``http.globalAgent``) and the one-call ``request()``.

Sockets belong to the event loop that opened them, so there is one global agent per running
event loop rather than one per process: two servers on one loop share it, as two Node servers in
one process share ``http.globalAgent``. When that loop ends, its global agent closes its sockets
and is forgotten, so a process that runs many loops one after another keeps none of them.
"""

from __future__ import annotations

import ssl
import weakref
from typing import Any, Literal

from ._agent import Agent
from ._arguments import (
    AuthTypes,
    ContentTypes,
    FormTypes,
    HeaderTypes,
    ParamTypes,
    naming_the_argument_meant,
)
from ._connection import Timeouts
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


@naming_the_argument_meant
async def request(
    method: str,
    url: str,
    *,
    agent: Agent | Literal[False] | None = None,
    headers: HeaderTypes | None = None,
    content: ContentTypes | None = None,
    json: Any = None,
    data: FormTypes | None = None,
    params: ParamTypes | None = None,
    auth: AuthTypes | None = None,
    timeout: float | Timeouts | None = None,
    ssl_context: ssl.SSLContext | None = None,
    follow_redirects: bool | None = None,
) -> Response:
    """Send one request and read its response. ``agent=None``: the global agent;
    ``agent=False``: a one-shot socket, sent with ``Connection: close`` and closed after the
    response; or an ``Agent`` of yours. The other arguments are ``Agent.request``'s.
    """
    if agent is False:
        async with Agent(keep_alive=False) as one_shot:
            return await request(
                method,
                url,
                agent=one_shot,
                headers=headers,
                content=content,
                json=json,
                data=data,
                params=params,
                auth=auth,
                timeout=timeout,
                ssl_context=ssl_context,
                follow_redirects=follow_redirects,
            )
    if agent is None:
        agent = global_agent()
    elif not isinstance(agent, Agent):
        raise InvalidOptionType(f"agent must be an Agent, None or False, got {agent!r}")
    return await agent.request(
        method,
        url,
        headers=headers,
        content=content,
        json=json,
        data=data,
        params=params,
        auth=auth,
        timeout=timeout,
        ssl_context=ssl_context,
        follow_redirects=follow_redirects,
    )
