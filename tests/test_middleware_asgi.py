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

from starlette_agent import Agent, AgentClosed, AgentOptions, AgentSettings
from starlette_agent._dependency import agent_dependency, get_agent
from starlette_agent._registry import AgentRegistry
from starlette_agent._setup_errors import AgentNotConfigured, UnknownAgentName
from starlette_agent.middleware import AgentMiddleware
from starlette_agent.testing import MockAgent, override_agent


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

    with pytest.raises(TypeError, match=r"agent must be an Agent, AgentOptions, .* got 3"):
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


# --------------------------------------------------------------------------- request.state.agent


async def state_agent(request: Request) -> JSONResponse:
    return JSONResponse({"agent": id(request.state.agent)})


async def state_agent_or_none(request: Request) -> JSONResponse:
    return JSONResponse({"agent": getattr(request.state, "agent", None)})


async def get_agent_route(request: Request) -> JSONResponse:
    return JSONResponse({"agent": id(await get_agent(request))})  # pragma: no cover


def state_app(**options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/state", state_agent),
            Route("/getattr", state_agent_or_none),
            Route("/get_agent", get_agent_route),
        ],
        middleware=[Middleware(AgentMiddleware, **options)],
    )


def raised(client: TestClient, path: str) -> BaseException:
    with pytest.raises(AgentNotConfigured) as caught:
        client.get(path)
    return caught.value


@pytest.mark.parametrize("options", [{}, {"registry": AgentRegistry()}], ids=["global", "registry"])
def test_state_agent_without_lifespan_raises_the_get_agent_error(options: Any) -> None:
    client = TestClient(state_app(**options))  # no `with`: the lifespan does not run
    from_state = raised(client, "/state")
    assert isinstance(from_state, AttributeError)
    assert str(from_state) == str(raised(client, "/get_agent"))
    assert "the ASGI lifespan did not run" in str(from_state)
    # getattr with a default still works, as for any missing attribute.
    assert client.get("/getattr").json() == {"agent": None}


def test_state_agent_of_an_unreached_route_middleware_raises_the_get_agent_error() -> None:
    # Route middleware of an app whose own middleware never started (no lifespan).
    payments = [Middleware(AgentMiddleware, agent="payments")]
    app = Starlette(
        routes=[
            Route("/state", state_agent, middleware=payments),
            Route("/get_agent", get_agent_route, middleware=payments),
        ]
    )
    client = TestClient(app)
    from_state = raised(client, "/state")
    assert isinstance(from_state, AttributeError)
    assert str(from_state) == str(raised(client, "/get_agent"))


# --------------------------------------------------------------------------- recipes


def recording_app(seen: list[Agent], **options: Any) -> Starlette:
    async def handler(request: Request) -> JSONResponse:
        agent = await get_agent(request)
        seen.append(agent)
        return JSONResponse({"agent": id(agent)})

    return Starlette(
        routes=[Route("/", handler)], middleware=[Middleware(AgentMiddleware, **options)]
    )


RECIPES = [
    pytest.param(AgentOptions(max_sockets=3), id="AgentOptions"),
    pytest.param(AgentSettings(max_sockets=3), id="AgentSettings"),
    pytest.param(lambda: Agent(max_sockets=3), id="factory"),
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_an_app_given_a_recipe_starts_five_times_with_a_fresh_agent_each_time(
    recipe: Any,
) -> None:
    seen: list[Agent] = []
    app = recording_app(seen, agent=recipe)
    for _ in range(5):
        with TestClient(app) as client:
            client.get("/")
            assert not seen[-1].closed
        assert seen[-1].closed
    assert len({id(agent) for agent in seen}) == 5
    assert {agent.config.max_sockets for agent in seen} == {3}


@pytest.mark.parametrize("recipe", RECIPES)
def test_an_app_given_a_recipe_starts_five_times_under_override_agent(recipe: Any) -> None:
    seen: list[Agent] = []
    app = recording_app(seen, agent=recipe)
    for _ in range(5):
        mock = MockAgent()
        with override_agent(app, mock), TestClient(app) as client:
            client.get("/")
        assert seen[-1] is mock
        assert not mock.closed  # an override is the caller's
    assert len(seen) == 5


def test_an_agent_instance_serves_one_start_and_the_error_names_the_recipes() -> None:
    agent = Agent()
    seen: list[Agent] = []
    app = recording_app(seen, agent=agent)
    with TestClient(app) as client:
        client.get("/")
    assert seen == [agent]
    assert agent.closed
    with (
        pytest.raises(AgentClosed, match=r"AgentOptions.*or a zero-argument factory"),
        TestClient(app),
    ):
        pass  # pragma: no cover


def test_a_factory_must_build_an_agent() -> None:
    app = recording_app([], agent=lambda: "not an agent")
    with pytest.raises(TypeError, match=r"factory .* returned 'not an agent'"), TestClient(app):
        pass  # pragma: no cover
