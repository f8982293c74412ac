"""Test doubles for code that uses agents: ``MockAgent`` and ``override_agent``.

``MockAgent`` is an ``Agent`` whose requests are answered in process, never on the network
unless asked: by *interceptors* (``mock.intercept("GET", url).reply(200, json=...)``) or by an
ASGI app mounted for an origin (``mock.mount("http://users", users_app)``). It implements
``Agent.dispatch``, the public method every request goes through, and sends what it answers
through the agent's own pool over simulated sockets, so ``stats()``, ``reused_socket``, the
limits and the ``Response`` behave as in production.

``override_agent(app, agent)`` makes a running (or not yet started) app inject another agent.

The app's agents are opened by its lifespan, so a test client must run it::

    with TestClient(app) as client:                      # `with`: lifespan on
        with override_agent(app, mock):
            client.get("/")

    async with LifespanManager(app) as manager:          # asgi_lifespan
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            await client.get("/")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.types import ASGIApp

from ._agent import Agent
from ._errors import InvalidOption
from ._mock import Interceptor, MockAgent, RecordedRequest, UnmatchedRequest
from ._settings import DEFAULT_NAME, normalise_name
from .middleware import AgentMiddleware, _walk

__all__ = [
    "Interceptor",
    "MockAgent",
    "RecordedRequest",
    "UnmatchedRequest",
    "override_agent",
]


@contextlib.contextmanager
def override_agent(app: ASGIApp, agent: Agent, name: str = DEFAULT_NAME) -> Iterator[Agent]:
    """Make ``app`` inject ``agent`` wherever it injects the agent called ``name``.

    Works on a running app and on one not started yet (its middleware stack is built now, so
    add middleware before calling this). Covers ``request.state.agent``, ``get_agent``,
    ``agent_dependency(name)`` and route-level middleware that name the agent. The agent is not
    leased: the app will not close it, the caller does.
    """
    key = normalise_name(name)
    middleware = _agent_middleware(app)
    if not middleware:
        raise InvalidOption(
            f"override_agent: {app!r} has no AgentMiddleware; add one before overriding its agent"
        )
    previous = [instance._overrides.get(key) for instance in middleware]
    for instance in middleware:
        instance.set_override(key, agent)
    try:
        yield agent
    finally:
        for instance, before in zip(middleware, previous, strict=True):
            instance.set_override(key, before)


def _agent_middleware(app: ASGIApp) -> list[AgentMiddleware]:
    build = getattr(app, "build_middleware_stack", None)
    if getattr(app, "middleware_stack", ...) is None and callable(build):
        # A Starlette (or FastAPI) app builds its stack on its first call; build it now so
        # that an override set before startup is seen by the middleware that will run.
        app.middleware_stack = build()  # type: ignore[attr-defined]
    return [node for _, node in _walk(app) if isinstance(node, AgentMiddleware)]
