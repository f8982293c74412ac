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
from ._discovery import MiddlewareFound, find
from ._errors import InvalidOption
from ._mock import Interceptor, MockAgent, RecordedRequest, UnmatchedRequest
from ._settings import DEFAULT_NAME, normalise_name
from ._setup_errors import UnknownAgentName
from .middleware import AgentMiddleware

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
    ``agent_dependency(name)`` and route-level middleware that name the agent, in the app and
    in the apps mounted in it. The agent is not closed by the app: the caller closes it.

    Raises ``UnknownAgentName`` for a name no registry of the app defines, listing the known
    ones, so that a typo cannot let the test's requests reach the real upstream.
    """
    key = normalise_name(name)
    middleware = _agent_middleware(app)
    if not middleware:
        raise InvalidOption(
            f"override_agent: {app!r} has no AgentMiddleware; add one before overriding its agent"
        )
    known = {known_name for instance in middleware for known_name in instance.registry.names}
    if key not in known:
        raise UnknownAgentName(
            name, (DEFAULT_NAME, *sorted(known - {DEFAULT_NAME})), where="override_agent"
        )
    previous = [instance.set_override(key, agent) for instance in middleware]
    try:
        yield agent
    finally:
        for instance, before in zip(middleware, previous, strict=True):
            instance.set_override(key, before)


def _agent_middleware(app: ASGIApp) -> list[AgentMiddleware]:
    """Every AgentMiddleware of ``app``, at the top and below (stacks not built yet are built)."""
    found = find(app, AgentMiddleware)
    return [site.middleware for site in found if isinstance(site, MiddlewareFound)]
