"""``AgentMiddleware``: give each request an agent, and open and close the agents with the app.

Pure ASGI, in the manner of Starlette's ``TrustedHostMiddleware``: options are checked once in
``__init__``; ``__call__`` handles ``http`` and ``websocket`` scopes with two dict stores and
passes every other scope through, except ``lifespan``, which it joins (``_lifespan``).

Theory of operation
-------------------
Whatever the middleware is given becomes one ``AgentRegistry`` in ``__init__`` (``_sources``),
and it opens and closes registries only. One given nothing of its own but a name *inherits*:
below another ``AgentMiddleware`` (on a route, a mount, in a mounted app) it injects that one's
agents; at the top, the running event loop's global agent.

At its app's lifespan startup the middleware opens its registry, finds every ``AgentMiddleware``
below it (``_discovery``; Starlette runs no lifespan below the app), opens theirs, and checks
every agent name asked for against the registry that will answer it: an unknown name fails the
startup. After the app's own shutdown it closes them all (``AgentRegistry.close``: wait until
idle, up to ``shutdown_timeout``, then close). Registries count their opens, so apps sharing
one close it when the last stops.

Each request gets ``scope["state"]["agent"]`` and ``scope[SCOPE_KEY]`` (``_binding``). Without
open agents, asking for one raises ``AgentNotConfigured`` saying why; a middleware the app's
startup could not reach raises at once, rather than let its routes use another app's agent.
"""

from __future__ import annotations

import functools

from starlette.types import ASGIApp, Receive, Scope, Send

from ._agent import Agent
from ._binding import NOT_STARTED_REASON, SCOPE_KEY, Binding, mark_unavailable, unreached_reason
from ._discovery import NameFound, find
from ._lifecycle import close_all
from ._lifespan import join_lifespan
from ._registry import DEFAULT_SHUTDOWN_TIMEOUT, AgentRegistry
from ._settings import DEFAULT_NAME, normalise_name
from ._setup_errors import AgentNotConfigured, UnknownAgentName
from ._sources import AgentRecipe, checked_shutdown_timeout, registry_of

__all__ = ["AgentMiddleware"]

_INJECTED_SCOPES = frozenset({"http", "websocket"})


class AgentMiddleware:
    """Injects an ``Agent`` into each http and websocket request, and owns the agents' lifecycle.

    ``agent``: ``AgentOptions`` (or ``AgentSettings``) or a zero-argument factory, which build a
    fresh agent at each startup, so the app can start again; an ``Agent`` instance, which serves
    one app lifespan; the name of an agent in ``registry`` (on a route or in a mounted app: of the
    app above); or None for the registry's ``"default"`` (the running event loop's
    ``global_agent()`` when there is no registry; on a route, the app's agent).
    ``registry``: an ``AgentRegistry`` of named agents; apps given the same registry share its
    agents, and the last app to stop closes them.
    ``shutdown_timeout``: seconds to wait at shutdown for in-flight requests before closing the
    agents; None waits for ever.

    Raises ``TypeError``/``ValueError`` naming the option for a bad option, and
    ``UnknownAgentName`` at startup for a name nothing defines.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        agent: AgentRecipe | str | None = None,
        registry: AgentRegistry | None = None,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        self.app = app
        self.shutdown_timeout = checked_shutdown_timeout(shutdown_timeout)
        self.registry = registry_of(agent, registry)
        self._name = normalise_name(agent) if isinstance(agent, str) else None
        self._recipe = None if agent is None or isinstance(agent, str) else agent
        #: Given no agents of its own: below another AgentMiddleware, it injects that one's.
        self.inherits = registry is None and self._recipe is None
        self._overrides: dict[str, Agent] = {}  # test overrides, by name (``override_agent``)
        self._binding: Binding | None = None  # set while a lifespan holds this one open

    @property
    def default_name(self) -> str:
        return self._name or DEFAULT_NAME

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        binding = self._binding
        if binding is not None and scope["type"] in _INJECTED_SCOPES:
            # The hot path, for every request while a lifespan holds this open: two dict stores.
            try:
                scope["state"]["agent"] = binding.default
            except KeyError:  # a server without lifespan state
                scope["state"] = {"agent": binding.default}
            scope[SCOPE_KEY] = binding
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        elif scope["type"] in _INJECTED_SCOPES:
            self._inject_unbound(scope)
        await self.app(scope, receive, send)

    def _inject_unbound(self, scope: Scope) -> None:
        outer = scope.get(SCOPE_KEY)
        if self.inherits and isinstance(outer, Binding):
            agent = outer.get(self._name or outer.default_name)  # the app above's
        elif self.registry.is_open:  # opened by another app's lifespan: the same agents
            scope[SCOPE_KEY] = binding = self._bind()
            agent = binding.default
        elif isinstance(outer, Binding):
            raise AgentNotConfigured(unreached_reason(self, scope))
        else:
            mark_unavailable(scope, NOT_STARTED_REASON)
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["agent"] = agent

    def _bind(self) -> Binding:
        return Binding(self.registry, self.default_name, self._overrides)

    def set_override(self, name: str, agent: Agent | None) -> Agent | None:
        """Inject ``agent`` wherever this would inject agent ``name`` (None: undo); answer the
        override it replaces."""
        previous = self._overrides.pop(name, None)
        if agent is not None:
            self._overrides[name] = agent
        if self._binding is not None:
            self._binding.refresh()
        return previous

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if isinstance(scope.get(SCOPE_KEY), Binding):
            # An AgentMiddleware above runs this lifespan, and opened this one with its own.
            await self.app(scope, receive, send)
            return
        opened: list[AgentMiddleware] = []

        def start() -> None:
            scope[SCOPE_KEY] = self._start(opened)

        stop = functools.partial(_close, opened)
        await join_lifespan(
            self.app, scope, receive, send, start=start, stop=stop, who="AgentMiddleware"
        )

    def _start(self, opened: list[AgentMiddleware]) -> Binding:
        """Open this middleware and every one below it (noted in ``opened``), and check every
        name asked for. Synchronous: no await between counting a use and noting it."""
        if self.inherits and self._name is not None:
            where = "an app-level AgentMiddleware without registry=AgentRegistry(...)"
            self.registry.check_name(self._name, where=where)
        binding = _open(self, opened)
        names: dict[AgentMiddleware | None, tuple[str, ...]] = {None: binding.names}
        for found in find(self.app, AgentMiddleware):
            known = names[found.owner]
            if isinstance(found, NameFound):
                if found.name not in known:
                    where = f"agent_dependency on {found.where}"
                    raise UnknownAgentName(found.name, known, where=where)
                continue
            below = found.middleware
            if not below.inherits:
                names[below] = _open(below, opened).names
                continue
            if below._name is not None and below._name not in known:
                where = f"AgentMiddleware on {found.where}"
                raise UnknownAgentName(below._name, known, where=where)
            names[below] = known
        return binding

    def __repr__(self) -> str:
        if self._recipe is not None:
            what = f"agent={self._recipe!r}"
        elif not self.inherits:
            what = f"registry={self.registry!r}"
            if self._name:
                what += f", agent={self._name!r}"
        else:
            what = "global agent" if self._name is None else f"agent={self._name!r}"
        state = "started" if self._binding is not None else "not started"
        return f"<AgentMiddleware {what} ({state})>"


def _open(middleware: AgentMiddleware, opened: list[AgentMiddleware]) -> Binding:
    middleware.registry.open()
    opened.append(middleware)
    middleware._binding = binding = middleware._bind()
    return binding


async def _close(opened: list[AgentMiddleware]) -> str | None:
    """Close what one lifespan opened, at once; answer what failed, if anything did."""
    for middleware in opened:
        middleware._binding = None
    closes = [
        functools.partial(m.registry.close, shutdown_timeout=m.shutdown_timeout) for m in opened
    ]
    errors = await close_all(closes)
    return "; ".join(f"{type(exc).__name__}: {exc}" for exc in errors) or None
