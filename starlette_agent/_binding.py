"""What an app's ``AgentMiddleware`` hands to the code below it, in the ASGI scope.

For each http and websocket scope the middleware sets ``scope["state"]["agent"]`` (the agent of
that app or route, read by ``get_agent``) and ``scope[SCOPE_KEY]``, a ``Binding`` that resolves
agent names (read by route-level middleware and ``agent_dependency``). The binding is built once
per app lifespan, so the per-request work is two dict stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._settings import DEFAULT_NAME
from ._setup_errors import AgentNotConfigured, UnknownAgentName

if TYPE_CHECKING:
    from ._agent import Agent
    from ._registry import AgentRegistry

__all__ = ["SCOPE_KEY", "Binding", "NotStarted"]

#: The scope key of the ``Binding``; namespaced like ASGI extensions to stay out of others' way.
SCOPE_KEY = "starlette_agent.binding"

_HOW_TO_ADD = (
    "add the middleware to the app: "
    "Starlette(..., middleware=[Middleware(AgentMiddleware)]) "
    "(or app.add_middleware(AgentMiddleware) in FastAPI)"
)


class Binding:
    """The agents one app injects: a registry (or a single agent) plus test overrides.

    ``default`` is the agent injected as ``state.agent``; ``get(name)`` any named agent.
    ``overrides`` is shared with the middleware, which calls ``refresh()`` when it changes.
    """

    __slots__ = ("agents", "default", "default_name", "overrides", "registry")

    def __init__(
        self,
        *,
        registry: AgentRegistry | None,
        agents: dict[str, Agent],
        default_name: str,
        overrides: dict[str, Agent],
    ) -> None:
        self.registry = registry
        self.agents = agents
        self.default_name = default_name
        self.overrides = overrides
        self.default = self.get(default_name)

    @property
    def names(self) -> tuple[str, ...]:
        return self.registry.names if self.registry is not None else tuple(self.agents)

    def get(self, name: str) -> Agent:
        """The agent called ``name``; ``UnknownAgentName`` listing the known names if none."""
        agent = self.overrides.get(name)
        if agent is not None:
            return agent
        if self.registry is not None:
            return self.registry.get(name)
        agent = self.agents.get(name)
        if agent is None:
            raise UnknownAgentName(name, self.names)
        return agent

    def refresh(self) -> None:
        self.default = self.get(self.default_name)


class NotStarted(Binding):
    """Stands in for a binding when the middleware is there but its lifespan never ran."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        # No super().__init__(): there is nothing to bind, and get() always raises.
        self.registry = None
        self.agents = {}
        self.overrides = {}
        self.default_name = DEFAULT_NAME
        self.reason = reason

    def get(self, name: str) -> Agent:
        raise AgentNotConfigured(self.reason)


NOT_STARTED_REASON = (
    "AgentMiddleware is installed but has not started: the ASGI lifespan did not run, and the "
    "agents are opened at lifespan startup. Run the server with lifespan on (uvicorn's default "
    "'auto' works; not --lifespan off); in tests use `with TestClient(app) as client:` or wrap "
    "httpx.ASGITransport(app) in `async with asgi_lifespan.LifespanManager(app):`"
)

MISSING_REASON = f"no agent was injected into this request; {_HOW_TO_ADD}"


def missing_agent(name: str = DEFAULT_NAME) -> AgentNotConfigured:
    """The error for a request that no ``AgentMiddleware`` has seen."""
    what = "an agent" if name == DEFAULT_NAME else f"agent {name!r}"
    return AgentNotConfigured(f"asked for {what}, but {MISSING_REASON}")
