"""FastAPI spelling of the agent dependency: ``AgentDep``.

    from starlette_agent.fastapi import AgentDep

    @app.get("/users/{user_id}")
    async def user(user_id: int, agent: AgentDep) -> dict[str, Any]:
        return (await agent.get(f"http://users/{user_id}")).json()

``AgentDep`` is ``Annotated[Agent, Depends(get_agent)]``, so tests replace it with
``app.dependency_overrides[get_agent]``. A named agent: ``agent_dep("payments")``. This module
needs FastAPI; the rest of the package does not.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - FastAPI is a test extra here
    raise ImportError(
        "starlette_agent.fastapi needs FastAPI (pip install fastapi); "
        "Starlette apps use starlette_agent.get_agent directly"
    ) from exc

from ._agent import Agent
from ._dependency import agent_dependency, get_agent

__all__ = ["AgentDep", "agent_dep", "agent_dependency", "get_agent"]

AgentDep: TypeAlias = Annotated[Agent, Depends(get_agent)]


def agent_dep(name: str) -> Any:
    """``Annotated[Agent, Depends(agent_dependency(name))]``: a parameter type for a named agent.

    ``payments: agent_dep("payments")`` works at run time; for type checkers, declare
    ``PaymentsAgent = Annotated[Agent, Depends(agent_dependency("payments"))]`` once instead.
    """
    return Annotated[Agent, Depends(agent_dependency(name))]
