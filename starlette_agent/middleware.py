"""``AgentMiddleware``: give each request an agent, and close every agent when the app stops.

Pure ASGI, in the manner of Starlette's ``TrustedHostMiddleware``: options are checked once in
``__init__``; ``__call__`` handles ``http`` and ``websocket`` scopes with two dict stores and
passes every other scope through, except ``lifespan``, which it joins.

Theory of operation
-------------------
*App level* (``Starlette(middleware=[Middleware(AgentMiddleware, ...)])``): the middleware sees
the lifespan. At ``lifespan.startup`` it opens its agents (a registry, a given agent, or the
global agent, each counted so co-hosted apps can share them) *before* the app's own startup, so
the app's lifespan may already use them. It then forwards the startup to the app and watches what
the app sends back: when the app reports ``lifespan.shutdown.complete`` (or failure), the app's
own shutdown is over, and only then are the agents closed, gracefully, before the message goes on
to the server. uvicorn turns SIGINT and SIGTERM into exactly this shutdown, so signals close the
agents too. An app without lifespan support (it raises or returns on the lifespan scope) is
covered: the middleware answers the lifespan protocol itself.

*Route level* (``Route(..., middleware=[Middleware(AgentMiddleware, agent="payments")])``):
Starlette never runs lifespans below the app, so these never see one. The app-level middleware
finds them at startup by walking the routes, checks the names they ask for (an unknown name fails
startup) and opens or leases what they hold, to close it with its own agents.

Each request gets ``scope["state"]["agent"]`` (what ``get_agent`` and ``request.state.agent``
read) and ``scope[SCOPE_KEY]``, the app's ``Binding``, which resolves names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _lifecycle
from ._binding import NOT_STARTED_REASON, SCOPE_KEY, Binding, NotStarted
from ._dependency import dependency_agent_name
from ._errors import InvalidOption, InvalidOptionType
from ._registry import DEFAULT_SHUTDOWN_TIMEOUT, AgentRegistry
from ._settings import DEFAULT_NAME, normalise_name
from ._setup_errors import UnknownAgentName

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["AgentMiddleware"]

logger = logging.getLogger("starlette_agent")

_NOT_STARTED = NotStarted(NOT_STARTED_REASON)


@dataclass
class _Session:
    """What one lifespan opened, to give back at its shutdown."""

    registries: list[AgentRegistry] = field(default_factory=list)
    leased: list[Agent] = field(default_factory=list)
    stopped: bool = False


class AgentMiddleware:
    """Injects an ``Agent`` into each http and websocket request, and owns the agents' lifecycle.

    ``agent``: an ``Agent`` instance, the name of an agent in ``registry`` (or, on a route, in
    the app's registry), or None for the registry's ``"default"`` (the process-wide
    ``global_agent()`` when there is no registry).
    ``registry``: an ``AgentRegistry`` of named agents; apps given the same registry share its
    agents, and the last app to stop closes them.
    ``shutdown_timeout``: seconds to wait at shutdown for in-flight requests before closing the
    agents; None waits for ever.

    An agent given here (instance, registry or global) is closed when the last app using it shuts
    down. Raises ``TypeError``/``ValueError`` naming the option for a bad option, and
    ``UnknownAgentName`` at startup for a name nothing defines.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        agent: Agent | str | None = None,
        registry: AgentRegistry | None = None,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        from ._agent import Agent

        self.app = app
        self._instance: Agent | None = None
        self._name: str | None = None
        if isinstance(agent, Agent):
            if registry is not None:
                raise InvalidOption(
                    "AgentMiddleware takes agent=<Agent> or registry=, not both; to add an Agent "
                    "instance to a registry, write AgentRegistry({'default': agent, ...})"
                )
            self._instance = agent
        elif isinstance(agent, str):
            self._name = normalise_name(agent)
            if registry is not None:
                registry.check_name(agent, where="AgentMiddleware(agent=...)")
        elif agent is not None:
            raise InvalidOptionType(
                f"AgentMiddleware agent must be an Agent, an agent name or None, got {agent!r}"
            )
        if registry is not None and not isinstance(registry, AgentRegistry):
            raise InvalidOptionType(
                f"AgentMiddleware registry must be an AgentRegistry, got {registry!r}"
            )
        if shutdown_timeout is not None and (
            isinstance(shutdown_timeout, bool)
            or not isinstance(shutdown_timeout, int | float)
            or not (0 <= shutdown_timeout < math.inf)
        ):
            raise InvalidOption(
                "AgentMiddleware shutdown_timeout must be a finite number of seconds >= 0 or "
                f"None, got {shutdown_timeout!r}"
            )
        self.registry = registry
        self.shutdown_timeout = shutdown_timeout
        #: Set while a lifespan of this (app-level) middleware runs.
        self._binding: Binding | None = None
        self._lifespans = 0
        #: Test overrides, by agent name (``override_agent``); shared with the binding.
        self._overrides: dict[str, Agent] = {}
        #: A route-level middleware holding its own agent or registry binds to it directly.
        self._own_binding: Binding | None = None

    # ------------------------------------------------------------------ requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        binding = self._binding
        if binding is not None and scope["type"] in _INJECTED_SCOPES:
            # The hot path, for every request of an app whose lifespan started this middleware:
            # two dict stores and nothing else.
            try:
                scope["state"]["agent"] = binding.default
            except KeyError:  # a server without lifespan state
                scope["state"] = {"agent": binding.default}
            scope[SCOPE_KEY] = binding
            await self.app(scope, receive, send)
            return
        scope_type = scope["type"]
        if scope_type == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope_type in _INJECTED_SCOPES:
            self._inject_below_app(scope)
        await self.app(scope, receive, send)

    def _inject_below_app(self, scope: Scope) -> None:
        """A route-level middleware, or an app-level one whose lifespan did not run."""
        outer = scope.get(SCOPE_KEY)
        agent: Agent | None = None
        if self._instance is not None:
            agent = self._overrides.get(DEFAULT_NAME, self._instance)
        elif self.registry is not None:
            if not self.registry.is_open:
                scope.setdefault(SCOPE_KEY, _NOT_STARTED)
                return
            own = self._registry_binding(self.registry)
            agent = own.default
            scope[SCOPE_KEY] = own
        elif outer is None or isinstance(outer, NotStarted):
            scope[SCOPE_KEY] = _NOT_STARTED
            return
        else:
            assert isinstance(outer, Binding)
            agent = outer.get(self._name or outer.default_name)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["agent"] = agent

    def _registry_binding(self, registry: AgentRegistry) -> Binding:
        binding = self._own_binding
        if binding is None or binding.registry is not registry:
            binding = self._own_binding = Binding(
                registry=registry,
                agents={},
                default_name=self._name or DEFAULT_NAME,
                overrides=self._overrides,
            )
        return binding

    # ------------------------------------------------------------------ overrides

    def set_override(self, name: str, agent: Agent | None) -> None:
        """Inject ``agent`` wherever this middleware would inject agent ``name`` (None: undo)."""
        if agent is None:
            self._overrides.pop(name, None)
        else:
            self._overrides[name] = agent
        for binding in (self._binding, self._own_binding):
            if binding is not None:
                binding.refresh()

    # ------------------------------------------------------------------ lifespan

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if isinstance(scope.get(SCOPE_KEY), Binding):
            # Another AgentMiddleware above this one runs the lifespan and adopted this one.
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "lifespan.startup":  # pragma: no cover - server broke the protocol
            raise RuntimeError(f"expected lifespan.startup, got {message['type']!r}")
        session = _Session()
        try:
            binding = self._start(session)
        except Exception as exc:
            await self._release(session)
            failure = f"AgentMiddleware could not start: {type(exc).__name__}: {exc}"
            await send({"type": "lifespan.startup.failed", "message": failure})
            raise
        scope[SCOPE_KEY] = binding

        replay: list[Message] = [message]
        app_answered = False
        stopped = False

        async def app_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        async def app_send(message: Message) -> None:
            nonlocal app_answered, stopped
            kind = message["type"]
            if kind.startswith("lifespan.startup."):
                app_answered = True
            if kind in _APP_FINISHED and not stopped:
                # The app's own shutdown (or failed startup) is over: now close the agents,
                # before the server hears of it and the process may exit.
                stopped = True
                error = await self._stop(session)
                if error is not None and kind == "lifespan.shutdown.complete":
                    message = {"type": "lifespan.shutdown.failed", "message": error}
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception:
            if app_answered:
                raise
            logger.debug("the app does not support lifespan; AgentMiddleware answers it alone")
            await self._lifespan_alone(app_receive, send, session)
            stopped = True
        else:
            if not app_answered:
                await self._lifespan_alone(app_receive, send, session)
                stopped = True
        finally:
            if not stopped:
                stopped = True
                await self._stop(session)

    async def _lifespan_alone(self, receive: Receive, send: Send, session: _Session) -> None:
        """Speak the lifespan protocol for an app that does not: startup done, wait, shut down."""
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        while message["type"] != "lifespan.shutdown":  # pragma: no cover - defensive
            message = await receive()
        error = await self._stop(session)
        if error is None:
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await send({"type": "lifespan.shutdown.failed", "message": error})

    def _start(self, session: _Session) -> Binding:
        """Open this app's agents and those of the middleware below it, noting them in
        ``session``. Synchronous: no await between counting a use and recording it, so
        co-hosted startups cannot race."""
        binding = self._open_own(session)
        for where, node in _walk(self.app):
            if isinstance(node, AgentMiddleware):
                node._adopt(binding, session, where=where)
            for name in _dependency_agent_names(getattr(node, "dependant", None)):
                if name not in binding.names:
                    raise UnknownAgentName(
                        name, binding.names, where=f"agent_dependency on {where}"
                    )
        self._lifespans += 1
        self._binding = binding
        return binding

    def _open_own(self, session: _Session) -> Binding:
        if self._instance is not None:
            _lifecycle.acquire(self._instance, owner="AgentMiddleware(agent=...)")
            session.leased.append(self._instance)
            return Binding(
                registry=None,
                agents={DEFAULT_NAME: self._instance},
                default_name=DEFAULT_NAME,
                overrides=self._overrides,
            )
        if self.registry is not None:
            self.registry.open()
            session.registries.append(self.registry)
            return Binding(
                registry=self.registry,
                agents={},
                default_name=self._name or DEFAULT_NAME,
                overrides=self._overrides,
            )
        if self._name is not None:
            raise UnknownAgentName(
                self._name,
                (DEFAULT_NAME,),
                where="an app-level AgentMiddleware without registry=AgentRegistry(...)",
            )
        from ._global import global_agent

        agent = global_agent()
        _lifecycle.acquire(agent, owner="AgentMiddleware (global agent)")
        session.leased.append(agent)
        return Binding(
            registry=None,
            agents={DEFAULT_NAME: agent},
            default_name=DEFAULT_NAME,
            overrides=self._overrides,
        )

    def _adopt(self, outer: Binding, session: _Session, *, where: str) -> None:
        """Called by the app-level middleware above this route-level one, at its startup."""
        if self._instance is not None:
            _lifecycle.acquire(self._instance, owner=f"AgentMiddleware on {where}")
            session.leased.append(self._instance)
        elif self.registry is not None:
            self.registry.open()
            session.registries.append(self.registry)
        elif self._name is not None and self._name not in outer.names:
            raise UnknownAgentName(self._name, outer.names, where=f"AgentMiddleware on {where}")

    async def _stop(self, session: _Session) -> str | None:
        """End one lifespan: give back what ``session`` opened; an error message if a close
        failed. Runs once per session, however many exits lead here."""
        if session.stopped:
            return None
        session.stopped = True
        self._lifespans -= 1
        if self._lifespans == 0:
            self._binding = None
        return await self._release(session)

    async def _release(self, session: _Session) -> str | None:
        to_close = _lifecycle.release(session.leased)
        errors: list[str] = []
        try:
            await _lifecycle.close_gracefully(to_close, timeout=self.shutdown_timeout)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        for registry in session.registries:
            try:
                await registry.close(shutdown_timeout=self.shutdown_timeout)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return "; ".join(errors) or None

    def __repr__(self) -> str:
        if self._instance is not None:
            what = f"agent={self._instance!r}"
        elif self.registry is not None:
            what = f"registry={self.registry!r}"
            if self._name:
                what += f", agent={self._name!r}"
        elif self._name is not None:
            what = f"agent={self._name!r}"
        else:
            what = "global agent"
        state = "started" if self._binding is not None else "not started"
        return f"<AgentMiddleware {what} ({state})>"


_INJECTED_SCOPES = frozenset({"http", "websocket"})

_APP_FINISHED = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)


def _walk(app: object) -> Iterator[tuple[str, object]]:
    """Every object below ``app`` in its middleware stack, routes and mounts.

    Follows the attributes Starlette's routing uses (``app``, ``routes``, ``middleware_stack``),
    so it finds route- and mount-level middleware and FastAPI routes without importing either.
    Each is reported with where it sits (``"route /api > /pay"``) for error messages.
    """
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("app", app)]
    while stack:
        where, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        path = getattr(node, "path", None)
        if isinstance(path, str) and path:
            where = f"route {path}" if where == "app" else f"{where} > {path}"
        yield where, node
        for attribute in ("app", "middleware_stack"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, str | int | float | bool):
                stack.append((where, child))
        routes = getattr(node, "routes", None)
        if isinstance(routes, list):
            stack.extend((where, route) for route in routes)


def _dependency_agent_names(dependant: object) -> Iterator[str]:
    """Names asked for by ``agent_dependency`` in a FastAPI route's dependency tree."""
    stack = [dependant] if dependant is not None else []
    while stack:
        node = stack.pop()
        name = dependency_agent_name(getattr(node, "call", None))
        if name is not None:
            yield name
        children = getattr(node, "dependencies", None)
        if isinstance(children, list):
            stack.extend(children)
