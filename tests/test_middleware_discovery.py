"""Every AgentMiddleware below an app is found and opened by the app's lifespan, or fails loudly.

Starlette runs the lifespan of the outermost app only: a mounted app's, a route's or a mount's
middleware never see one. The app-level ``AgentMiddleware`` finds them at startup; one it cannot
reach raises ``AgentNotConfigured`` on its first request instead of letting the request fall
through to another app's agent.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from cohost import serve
from servers import UvicornServer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_agent import AgentMiddleware, AgentNotConfigured, AgentRegistry, UnknownAgentName
from starlette_agent._dependency import get_agent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio


async def whoami(request: Request) -> JSONResponse:
    agent = await get_agent(request)
    return JSONResponse({"agent": id(agent), "max_sockets": agent.config.max_sockets})


def sub_app(registry: AgentRegistry, *, routes: list[Any] | None = None) -> Starlette:
    return Starlette(
        routes=routes or [Route("/whoami", whoami)],
        middleware=[Middleware(AgentMiddleware, registry=registry)],
    )


def outer_app(*routes: Any, registry: AgentRegistry) -> Starlette:
    return Starlette(
        routes=[Route("/whoami", whoami), *routes],
        middleware=[Middleware(AgentMiddleware, registry=registry)],
    )


class Opaque:
    """An ASGI wrapper that keeps the app it wraps where no one can see it."""

    def __init__(self, app: ASGIApp) -> None:
        self._hidden = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._hidden(scope, receive, send)


def test_a_mounted_app_gets_its_own_registry_opened_and_closed_with_the_outer_app() -> None:
    outer = AgentRegistry({"default": {"max_sockets": 10}})
    inner = AgentRegistry({"default": {"max_sockets": 3}})
    app = outer_app(Mount("/v2", app=sub_app(inner)), registry=outer)

    with TestClient(app) as client:
        assert inner.is_open
        assert client.get("/v2/whoami").json() == {"agent": id(inner.get()), "max_sockets": 3}
        assert client.get("/whoami").json() == {"agent": id(outer.get()), "max_sockets": 10}
        inner_agent = inner.get()
    assert inner_agent.closed
    assert not inner.is_open


@pytest.mark.anyio
async def test_a_mounted_app_keeps_its_own_socket_limit_against_a_real_upstream(
    server: UvicornServer,
) -> None:
    outer = AgentRegistry({"default": {"idle_timeout": 30}})
    inner = AgentRegistry({"default": {"max_sockets": 1, "idle_timeout": 30}})

    async def call(request: Request) -> JSONResponse:
        agent = await get_agent(request)
        return JSONResponse((await agent.get(f"{server.url}/slow?delay=0.05")).status)

    app = outer_app(Mount("/v2", app=sub_app(inner, routes=[Route("/call", call)])), registry=outer)
    async with serve(app) as hosted, httpx.AsyncClient() as client:

        async def one() -> None:
            assert (await client.get(f"{hosted.urls[0]}/v2/call")).status_code == 200

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)

    # Eight concurrent calls, one socket: the mounted app's max_sockets=1 held.
    assert server.stats.requests == 8
    assert server.stats.opened == 1


def test_route_middleware_inside_a_mounted_app_names_agents_of_that_app() -> None:
    outer = AgentRegistry({"payments": {"max_sockets": 10}})
    inner = AgentRegistry({"payments": {"max_sockets": 2}})
    payments = [Middleware(AgentMiddleware, agent="payments")]
    mounted = sub_app(
        inner,
        routes=[
            Route("/pay", whoami, middleware=payments),
            Mount("/admin", routes=[Route("/pay", whoami)], middleware=payments),
        ],
    )
    app = outer_app(Mount("/v2", app=mounted), registry=outer)

    with TestClient(app) as client:
        expected = {"agent": id(inner.get("payments")), "max_sockets": 2}
        assert client.get("/v2/pay").json() == expected
        assert client.get("/v2/admin/pay").json() == expected


def test_an_unknown_name_inside_a_mounted_app_fails_startup_listing_that_apps_names() -> None:
    outer = AgentRegistry({"payments": {}})
    inner = AgentRegistry({"search": {}})
    typo = [Middleware(AgentMiddleware, agent="serach")]
    mounted = sub_app(inner, routes=[Route("/find", whoami, middleware=typo)])
    app = outer_app(Mount("/v2", app=mounted), registry=outer)

    with (
        pytest.raises(UnknownAgentName, match=r"'serach'.*route /v2 > /find.*'default', 'search'"),
        TestClient(app),
    ):
        pass  # pragma: no cover
    assert not outer.is_open
    assert not inner.is_open


def test_a_mounted_app_mounted_in_a_mount_is_found() -> None:
    outer = AgentRegistry()
    inner = AgentRegistry({"default": {"max_sockets": 4}})
    app = outer_app(
        Mount("/api", routes=[Mount("/v2", app=sub_app(inner))]),
        registry=outer,
    )
    with TestClient(app) as client:
        assert client.get("/api/v2/whoami").json()["max_sockets"] == 4


def test_middleware_discovery_cannot_reach_fails_its_first_request_naming_route_and_fix() -> None:
    outer = AgentRegistry()
    inner = AgentRegistry({"default": {"max_sockets": 3}})
    app = outer_app(Mount("/v3", app=Opaque(sub_app(inner))), registry=outer)

    with TestClient(app) as client:
        assert client.get("/whoami").json()["agent"] == id(outer.get())
        with pytest.raises(AgentNotConfigured, match=r"/v3/whoami") as caught:
            client.get("/v3/whoami")
    message = str(caught.value)
    assert "was not opened" in message
    assert "`.app`" in message  # the fix: let discovery see the wrapped app...
    assert "async with registry" in message  # ...or open the registry in a lifespan
