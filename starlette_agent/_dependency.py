"""Getting the injected agent in a handler: one function for Starlette and FastAPI alike.

``get_agent`` takes only an ``HTTPConnection``, the base of ``Request`` and ``WebSocket``, so a
Starlette handler awaits it directly and FastAPI resolves it as a dependency
(``Depends(get_agent)``), which tests can replace with ``app.dependency_overrides[get_agent]``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from ._agent import Agent
from ._binding import SCOPE_KEY, missing_agent
from ._settings import normalise_name

__all__ = ["agent_dependency", "get_agent"]

AgentGetter = Callable[[HTTPConnection], Awaitable[Agent]]


async def get_agent(conn: HTTPConnection) -> Agent:
    """The agent ``AgentMiddleware`` chose for this request (also ``request.state.agent``).

    Raises ``AgentNotConfigured`` saying what to do when no middleware injected one, or when the
    middleware is there but its agents are not open (the app's lifespan did not run).
    """
    state = conn.scope.get("state")
    if state is not None:
        try:
            return state["agent"]  # type: ignore[no-any-return]
        except KeyError:  # (an AgentState raises AgentNotConfigured instead, saying why)
            pass
    binding = conn.scope.get(SCOPE_KEY)
    if binding is None:
        raise missing_agent()
    return binding.get(binding.default_name)  # type: ignore[no-any-return]


def agent_dependency(name: str) -> AgentGetter:
    """A ``get_agent`` for the agent called ``name`` in the app's registry.

    The same name always gives the same function, so ``Depends(agent_dependency("payments"))``
    can be replaced in ``app.dependency_overrides[agent_dependency("payments")]``. An unknown name
    raises ``UnknownAgentName`` listing the known ones (under FastAPI, checked at startup).
    """
    return _named_dependency(normalise_name(name))


@functools.cache
def _named_dependency(key: str) -> AgentGetter:
    async def get_named_agent(conn: HTTPConnection) -> Agent:
        binding = conn.scope.get(SCOPE_KEY)
        if binding is None:
            raise missing_agent(key)
        return binding.get(key)  # type: ignore[no-any-return]

    get_named_agent.__name__ = get_named_agent.__qualname__ = f"get_agent_{key}"
    get_named_agent.agent_name = key  # type: ignore[attr-defined]
    return get_named_agent


def dependency_agent_name(call: object) -> str | None:
    """The agent name an ``agent_dependency`` function asks for; None for anything else."""
    name = getattr(call, "agent_name", None)
    return name if isinstance(name, str) and getattr(call, "__module__", "") == __name__ else None
