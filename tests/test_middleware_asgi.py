"""AgentMiddleware as an ASGI citizen, in process: test clients, scopes, options, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from starlette_agent import Agent
from starlette_agent._dependency import agent_dependency, get_agent
from starlette_agent._registry import AgentRegistry
from starlette_agent._setup_errors import AgentNotConfigured, UnknownAgentName
from starlette_agent.middleware import AgentMiddleware


async def whoami(request: Request) -> JSONResponse:
    agent = await get_agent(request)
    return JSONResponse({"agent": id(agent), "state": id(request.state.agent)})


async def ws_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"agent": id(await get_agent(websocket))})
    await websocket.close()


def app_with(**options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/", whoami), WebSocketRoute("/ws", ws_whoami)],
        middleware=[Middleware(AgentMiddleware, **options)],
    )


def test_test_client_inside_with_gets_the_injected_agent() -> None:
    registry = AgentRegistry()
    app = app_with(registry=registry)
    with TestClient(app) as client:
        expected = id(registry.get())
        assert client.get("/").json() == {"agent": expected, "state": expected}
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"agent": expected}
        agent = registry.get()
    assert agent.closed


@pytest.mark.anyio
async def test_asgi_transport_with_lifespan_manager_gets_the_injected_agent() -> None:
    registry = AgentRegistry()
    app = app_with(registry=registry)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://app"
        ) as client,
    ):
        agent = registry.get()
        response = await client.get("/")
        assert response.json() == {"agent": id(agent), "state": id(agent)}
    assert agent.closed


def test_without_lifespan_get_agent_says_the_lifespan_did_not_run() -> None:
    client = TestClient(app_with(registry=AgentRegistry()))  # no `with`: no lifespan
    with pytest.raises(AgentNotConfigured, match="the ASGI lifespan did not run"):
        client.get("/")


def test_without_middleware_get_agent_says_how_to_add_it() -> None:
    app = Starlette(routes=[Route("/", whoami)])
    with TestClient(app) as client, pytest.raises(AgentNotConfigured, match="add the middleware"):
        client.get("/")

    async def named(request: Request) -> JSONResponse:
        await agent_dependency("payments")(request)
        return JSONResponse({})  # pragma: no cover

    app = Starlette(routes=[Route("/", named)])
    with TestClient(app) as client, pytest.raises(AgentNotConfigured, match="agent 'payments'"):
        client.get("/")


def test_agent_instance_is_injected_and_closed_at_shutdown() -> None:
    agent = Agent()
    with TestClient(app_with(agent=agent)) as client:
        assert client.get("/").json()["agent"] == id(agent)
        assert not agent.closed
    assert agent.closed
    with pytest.raises(RuntimeError, match="already closed"), TestClient(app_with(agent=agent)):
        pass  # pragma: no cover


def test_other_scope_types_pass_through_untouched() -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    middleware = AgentMiddleware(inner)
    import anyio

    scope = {"type": "custom.thing", "value": 1}
    anyio.run(middleware, scope, None, None)
    assert seen == [{"type": "custom.thing", "value": 1}]


def test_options_are_validated_once_with_their_names() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    with pytest.raises(TypeError, match="agent must be an Agent, an agent name or None, got 3"):
        AgentMiddleware(inner, agent=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="registry must be an AgentRegistry"):
        AgentMiddleware(inner, registry={"default": {}})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shutdown_timeout must be .* got -1"):
        AgentMiddleware(inner, shutdown_timeout=-1)
    with pytest.raises(ValueError, match="not both"):
        AgentMiddleware(inner, agent=Agent(), registry=AgentRegistry())
    with pytest.raises(UnknownAgentName, match=r"'paymnts'.*known names: 'default', 'payments'"):
        AgentMiddleware(inner, agent="paymnts", registry=AgentRegistry({"payments": {}}))


def test_app_level_name_without_registry_fails_startup() -> None:
    app = app_with(agent="payments")
    with pytest.raises(UnknownAgentName, match="without registry"), TestClient(app):
        pass  # pragma: no cover


def test_named_app_agent_and_route_names_resolve_in_the_app_registry() -> None:
    registry = AgentRegistry({"payments": {}, "search": {}})

    async def both(request: Request) -> JSONResponse:
        search = await agent_dependency("search")(request)
        return JSONResponse({"agent": id(request.state.agent), "search": id(search)})

    app = Starlette(
        routes=[
            Route("/", both),
            Route("/default", both, middleware=[Middleware(AgentMiddleware, agent="default")]),
        ],
        middleware=[Middleware(AgentMiddleware, registry=registry, agent="payments")],
    )
    with TestClient(app) as client:
        assert client.get("/").json() == {
            "agent": id(registry.get("payments")),
            "search": id(registry.get("search")),
        }
        assert client.get("/default").json()["agent"] == id(registry.get("default"))


def test_route_middleware_with_its_own_agent_is_closed_with_the_app() -> None:
    own = Agent()
    app = Starlette(
        routes=[Route("/", whoami, middleware=[Middleware(AgentMiddleware, agent=own)])],
        middleware=[Middleware(AgentMiddleware, registry=AgentRegistry())],
    )
    with TestClient(app) as client:
        assert client.get("/").json()["agent"] == id(own)
    assert own.closed


def test_repr_says_what_it_injects_and_whether_it_started() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    assert repr(AgentMiddleware(inner)) == "<AgentMiddleware global agent (not started)>"
    registry = AgentRegistry({"payments": {}})
    assert repr(AgentMiddleware(inner, registry=registry, agent="payments")) == (
        "<AgentMiddleware registry=<AgentRegistry [default, payments] closed>, "
        "agent='payments' (not started)>"
    )
