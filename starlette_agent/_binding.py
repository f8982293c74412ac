"""What an ``AgentMiddleware`` hands to the code below it, in the ASGI scope.

For each http and websocket scope the middleware sets ``scope["state"]["agent"]`` (the agent of
that app or route: ``request.state.agent``, read by ``get_agent``) and ``scope[SCOPE_KEY]``, a
``Binding`` that resolves agent names (read by route-level middleware and ``agent_dependency``).
A binding is built once per app lifespan, so the per-request work is two dict stores.

When the agents are not open, the middleware sets an ``Unavailable`` binding and an
``AgentState`` instead: every way of asking for an agent (``get_agent``, ``agent_dependency``,
``request.state.agent``) then raises one ``AgentNotConfigured`` with the same message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._settings import DEFAULT_NAME
from ._setup_errors import AgentNotConfigured

if TYPE_CHECKING:
    from starlette.types import Scope

    from ._agent import Agent
    from ._registry import AgentRegistry

__all__ = ["SCOPE_KEY", "AgentState", "Binding", "Unavailable", "missing_agent"]

#: The scope key of the ``Binding``; namespaced like ASGI extensions to stay out of others' way.
SCOPE_KEY = "starlette_agent.binding"


class Binding:
    """The agents one middleware injects: an open registry, plus test overrides.

    ``default`` is the agent injected as ``state.agent``; ``get(name)`` any named agent.
    ``overrides`` is the middleware's own dict; it calls ``refresh()`` when that changes.
    """

    __slots__ = ("default", "default_name", "overrides", "registry")

    def __init__(
        self, registry: AgentRegistry, default_name: str, overrides: dict[str, Agent]
    ) -> None:
        self.registry = registry
        self.default_name = default_name
        self.overrides = overrides
        self.default = self.get(default_name)

    @property
    def names(self) -> tuple[str, ...]:
        return self.registry.names

    def get(self, name: str) -> Agent:
        """The agent called ``name``; ``UnknownAgentName`` listing the known names if none."""
        agent = self.overrides.get(name)
        return agent if agent is not None else self.registry.get(name)

    def refresh(self) -> None:
        self.default = self.get(self.default_name)


class Unavailable:
    """Stands in for a binding when the agents are not open: asking for any raises ``reason``."""

    __slots__ = ("reason",)

    default_name = DEFAULT_NAME

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def get(self, name: str) -> Agent:
        raise AgentNotConfigured(self.reason)


class AgentState(dict[str, Any]):
    """A request's ``scope["state"]`` when no agent could be injected.

    Starlette's ``request.state`` reads this dict by key, so a missing ``agent`` raises
    ``AgentNotConfigured`` (an ``AttributeError`` too) saying why, instead of Starlette's bare
    ``AttributeError``. Every other key behaves as in a plain dict.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str, state: dict[str, Any]) -> None:
        super().__init__(state)
        self.reason = reason

    def __missing__(self, key: str) -> Any:
        if key == "agent":
            raise AgentNotConfigured(self.reason)
        raise KeyError(key)


def mark_unavailable(scope: Scope, reason: str) -> None:
    """Make every request for an agent in ``scope`` raise ``AgentNotConfigured(reason)``."""
    scope[SCOPE_KEY] = Unavailable(reason)
    scope["state"] = AgentState(reason, scope.get("state") or {})


NOT_STARTED_REASON = (
    "AgentMiddleware is installed but has not started: the ASGI lifespan did not run, and the "
    "agents are opened at lifespan startup. Run the server with lifespan on (uvicorn's default "
    "'auto' works; not --lifespan off); in tests use `with TestClient(app) as client:` or wrap "
    "httpx.ASGITransport(app) in `async with asgi_lifespan.LifespanManager(app):`. A mounted "
    "app's or a route's AgentMiddleware is opened by the lifespan of the app above it, which "
    "needs an AgentMiddleware of its own"
)

MISSING_REASON = (
    "no agent was injected into this request; add the middleware to the app: "
    "Starlette(..., middleware=[Middleware(AgentMiddleware)]) "
    "(or app.add_middleware(AgentMiddleware) in FastAPI)"
)


def unreached_reason(middleware: object, scope: Scope) -> str:
    """Why a middleware below a started app has no agents: the app's startup did not find it."""
    route = getattr(scope.get("route"), "path", None)
    below = f" below route {route}" if route else ""
    return (
        f"{middleware!r}{below}, on the request for {scope.get('path')!r}, was not opened: "
        f"the app's AgentMiddleware opens every AgentMiddleware it finds below it at startup, "
        f"and something in between hides this one. Let that wrapper expose the app it wraps as "
        f"`.app`; or give this middleware registry=AgentRegistry(...) and open that registry "
        f"in the app's lifespan (`async with registry:`); or name an agent of the app's "
        f"registry (agent='name')"
    )


def missing_agent(name: str = DEFAULT_NAME) -> AgentNotConfigured:
    """The error for a request that no ``AgentMiddleware`` has seen."""
    what = "an agent" if name == DEFAULT_NAME else f"agent {name!r}"
    return AgentNotConfigured(f"asked for {what}, but {MISSING_REASON}")
