"""The same handler code under Starlette and FastAPI, against a real upstream."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from cohost import serve
from servers import UvicornServer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

fastapi = pytest.importorskip("fastapi")
from fastapi import APIRouter, Depends, FastAPI  # noqa: E402

from starlette_agent import Agent  # noqa: E402
from starlette_agent._dependency import agent_dependency, get_agent  # noqa: E402
from starlette_agent._registry import AgentRegistry  # noqa: E402
from starlette_agent._setup_errors import UnknownAgentName  # noqa: E402
from starlette_agent.fastapi import AgentDep, agent_dep  # noqa: E402
from starlette_agent.middleware import AgentMiddleware  # noqa: E402
from starlette_agent.testing import MockAgent  # noqa: E402

PaymentsAgent = Annotated[Agent, Depends(agent_dependency("payments"))]


async def fetch_peer(agent: Agent, upstream: str) -> dict[str, Any]:
    """The handler logic both frameworks share: one upstream call through the given agent."""
    response = await agent.get(f"{upstream}/peer")
    return {"port": response.json()["port"], "agent": id(agent)}


def starlette_app(upstream: str, registry: AgentRegistry) -> Starlette:
    async def peer(request: Request) -> JSONResponse:
        return JSONResponse(await fetch_peer(await get_agent(request), upstream))

    return Starlette(
        routes=[Route("/peer", peer)],
        middleware=[Middleware(AgentMiddleware, registry=registry)],
    )


def fastapi_app(upstream: str, registry: AgentRegistry) -> FastAPI:
    app = FastAPI(middleware=[Middleware(AgentMiddleware, registry=registry)])

    @app.get("/peer")
    async def peer(agent: AgentDep) -> dict[str, Any]:
        return await fetch_peer(agent, upstream)

    @app.get("/pay")
    async def pay(agent: PaymentsAgent) -> dict[str, Any]:
        return await fetch_peer(agent, upstream)

    return app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_same_handler_code_in_starlette_and_fastapi_shares_the_pool(
    server: UvicornServer,
) -> None:
    registry = AgentRegistry(
        {"default": {"max_sockets": 1, "idle_timeout": 30}, "payments": {"max_sockets": 1}}
    )
    apps = (starlette_app(server.url, registry), fastapi_app(server.url, registry))
    async with serve(*apps) as hosted, httpx.AsyncClient() as client:
        results = [(await client.get(f"{url}/peer")).json() for url in hosted.urls * 3]
        paid = (await client.get(f"{hosted.urls[1]}/pay")).json()
        default_id, payments_id = id(registry.get()), id(registry.get("payments"))

    assert {r["agent"] for r in results} == {default_id}
    assert paid["agent"] == payments_id
    assert len({r["port"] for r in results}) == 1
    assert paid["port"] not in {r["port"] for r in results}
    assert server.stats.opened == 2  # one socket per agent, shared by both frameworks


def test_dependency_overrides_replace_get_agent() -> None:
    app = fastapi_app("http://upstream", AgentRegistry({"payments": {}}))
    mock = MockAgent()
    mock.intercept("GET", "http://upstream/peer").reply(200, json={"port": 1234})
    app.dependency_overrides[get_agent] = lambda: mock
    with TestClient(app) as client:
        assert client.get("/peer").json() == {"port": 1234, "agent": id(mock)}
    mock.assert_no_pending_interceptors()


def test_agent_dependency_is_one_function_per_name_so_it_can_be_overridden() -> None:
    assert agent_dependency("payments") is agent_dependency("Payments")
    app = fastapi_app("http://upstream", AgentRegistry({"payments": {}}))
    mock = MockAgent()
    mock.intercept("GET", "http://upstream/peer").reply(200, json={"port": 1})
    app.dependency_overrides[agent_dependency("payments")] = lambda: mock
    with TestClient(app) as client:
        assert client.get("/pay").json()["agent"] == id(mock)


def test_unknown_agent_dependency_name_fails_startup() -> None:
    app = fastapi_app("http://upstream", AgentRegistry())  # no "payments"
    with (
        pytest.raises(UnknownAgentName, match=r"agent_dependency on route /pay"),
        TestClient(app),
    ):
        pass  # pragma: no cover


def test_agent_dep_names_an_agent() -> None:
    registry = AgentRegistry({"search": {}})
    app = FastAPI(middleware=[Middleware(AgentMiddleware, registry=registry)])

    @app.get("/")
    async def handler(search: agent_dep("search")) -> dict[str, int]:  # type: ignore[valid-type]
        return {"agent": id(search)}

    with TestClient(app) as client:
        assert client.get("/").json() == {"agent": id(registry.get("search"))}


# --------------------------------------------------------------------------- included routers


def test_routes_of_an_included_router_get_their_named_agents() -> None:
    registry = AgentRegistry({"payments": {"max_sockets": 2}})
    router = APIRouter(prefix="/api")

    @router.get("/pay")
    async def pay(agent: PaymentsAgent) -> dict[str, Any]:
        return {"agent": id(agent)}

    app = FastAPI(middleware=[Middleware(AgentMiddleware, registry=registry)])
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/api/pay").json() == {"agent": id(registry.get("payments"))}


def included(router: APIRouter, **include: Any) -> FastAPI:
    app = FastAPI(middleware=[Middleware(AgentMiddleware, registry=AgentRegistry({"pay": {}}))])
    app.include_router(router, **include)
    return app


def typo_dependency() -> Any:
    return Depends(agent_dependency("paymnets"))


def router_with_typo_in_a_route() -> FastAPI:
    router = APIRouter()

    @router.get("/x")
    async def x(agent: agent_dep("paymnets")) -> None:  # type: ignore[valid-type]
        pass  # pragma: no cover

    return included(router)


def router_with_typo_in_its_dependencies() -> FastAPI:
    router = APIRouter(dependencies=[typo_dependency()])

    @router.get("/x")
    async def x() -> None:
        pass  # pragma: no cover

    return included(router)


def router_included_with_a_typo_in_dependencies() -> FastAPI:
    router = APIRouter()

    @router.get("/x")
    async def x() -> None:
        pass  # pragma: no cover

    return included(router, dependencies=[typo_dependency()])


@pytest.mark.parametrize(
    "make_app",
    [
        router_with_typo_in_a_route,
        router_with_typo_in_its_dependencies,
        router_included_with_a_typo_in_dependencies,
    ],
)
def test_unknown_names_in_included_routers_fail_startup(make_app: Any) -> None:
    app = make_app()
    with (
        pytest.raises(UnknownAgentName, match=r"'paymnets'.*known names: 'default', 'pay'"),
        TestClient(app),
    ):
        pass  # pragma: no cover


def test_a_sub_app_mounted_in_an_included_router_opens_its_own_registry() -> None:
    inner = AgentRegistry({"default": {"max_sockets": 3}})
    sub = FastAPI(middleware=[Middleware(AgentMiddleware, registry=inner)])

    @sub.get("/whoami")
    async def whoami(agent: AgentDep) -> dict[str, Any]:
        return {"agent": id(agent), "max_sockets": agent.config.max_sockets}

    router = APIRouter()
    router.mount("/v2", sub)
    app = included(router)
    with TestClient(app) as client:
        assert client.get("/v2/whoami").json() == {"agent": id(inner.get()), "max_sockets": 3}
