"""AgentMiddleware against real servers: apps co-hosted on two uvicorn servers in one event
loop, calling a counting upstream uvicorn. What is asserted is what the upstream saw."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from cohost import serve
from servers import UvicornServer, wait_until
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from starlette_agent import Agent, global_agent
from starlette_agent._dependency import get_agent
from starlette_agent._registry import AgentRegistry
from starlette_agent.middleware import AgentMiddleware

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio


def make_app(upstream: str, *, route_middleware: list[Middleware] | None = None, **options: Any):
    """An app whose ``/call`` asks the upstream for the client port it saw."""

    async def call(request: Request) -> JSONResponse:
        agent = await get_agent(request)
        response = await agent.get(f"{upstream}/peer")
        return JSONResponse({"port": response.json()["port"], "agent": id(agent)})

    async def noop(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/call", call),
            Route("/pay", call, middleware=route_middleware),
            Route("/noop", noop),
        ],
        middleware=[Middleware(AgentMiddleware, **options)],
    )


async def call_many(client: httpx.AsyncClient, url: str, count: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    async def one() -> None:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        results.append(response.json())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return results


async def test_apps_sharing_a_registry_share_one_socket(server: UvicornServer) -> None:
    registry = AgentRegistry({"default": {"max_sockets": 1, "idle_timeout": 30}})
    app1 = make_app(server.url, registry=registry)
    app2 = make_app(server.url, registry=registry)

    async with serve(app1, app2) as hosted, httpx.AsyncClient() as client:
        one = await call_many(client, f"{hosted.urls[0]}/call", 20)
        two = await call_many(client, f"{hosted.urls[1]}/call", 20)

    assert server.stats.opened == 1
    assert server.stats.requests == 40
    assert {r["agent"] for r in one} == {r["agent"] for r in two}
    assert len({r["port"] for r in one + two}) == 1


async def test_apps_with_their_own_registries_are_isolated(server: UvicornServer) -> None:
    app1 = make_app(server.url, registry=AgentRegistry({"default": {"max_sockets": 1}}))
    app2 = make_app(server.url, registry=AgentRegistry({"default": {"max_sockets": 1}}))

    async with serve(app1, app2) as hosted, httpx.AsyncClient() as client:
        one = await call_many(client, f"{hosted.urls[0]}/call", 20)
        two = await call_many(client, f"{hosted.urls[1]}/call", 20)

    assert server.stats.opened == 2
    assert len({r["port"] for r in one}) == 1
    assert len({r["port"] for r in two}) == 1
    assert {r["port"] for r in one} != {r["port"] for r in two}


async def test_apps_given_one_agent_instance_share_it(server: UvicornServer) -> None:
    agent = Agent(max_sockets=1, idle_timeout=30)
    app1 = make_app(server.url, agent=agent)
    app2 = make_app(server.url, agent=agent)

    async with serve(app1, app2) as hosted, httpx.AsyncClient() as client:
        await call_many(client, f"{hosted.urls[0]}/call", 10)
        await hosted.stop(0)
        assert not agent.closed  # the second app still uses it
        await call_many(client, f"{hosted.urls[1]}/call", 10)
        await hosted.stop(1)
        assert agent.closed  # closed by the last app to stop, once

    assert server.stats.opened == 1
    assert server.stats.requests == 20


async def test_per_route_agent_is_injected_only_on_its_route(server: UvicornServer) -> None:
    registry = AgentRegistry(
        {"default": {"max_sockets": 1}, "payments": {"max_sockets": 1, "idle_timeout": 30}}
    )
    app = make_app(
        server.url,
        registry=registry,
        route_middleware=[Middleware(AgentMiddleware, agent="payments")],
    )

    async with serve(app) as hosted, httpx.AsyncClient() as client:
        plain = await call_many(client, f"{hosted.urls[0]}/call", 5)
        paid = await call_many(client, f"{hosted.urls[0]}/pay", 5)
        assert {r["agent"] for r in plain} == {id(registry.get("default"))}
        assert {r["agent"] for r in paid} == {id(registry.get("payments"))}

    # One socket per agent, and each route always used its own.
    assert server.stats.opened == 2
    assert len({r["port"] for r in plain}) == 1
    assert len({r["port"] for r in paid}) == 1
    assert {r["port"] for r in plain} != {r["port"] for r in paid}


async def test_shutdown_closes_every_socket(server: UvicornServer, server2: UvicornServer) -> None:
    registry = AgentRegistry({"default": {"idle_timeout": 60}, "other": {"idle_timeout": 60}})

    async def call(request: Request) -> PlainTextResponse:
        await registry.get("default").get(f"{server.url}/peer")
        await registry.get("other").get(f"{server2.url}/peer")
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/call", call)], middleware=[Middleware(AgentMiddleware, registry=registry)]
    )
    async with serve(app) as hosted, httpx.AsyncClient() as client:
        assert (await client.get(f"{hosted.urls[0]}/call")).status_code == 200
        assert server.stats.open == 1
        assert server2.stats.open == 1
        agents = [registry.get("default"), registry.get("other")]

    assert await wait_until(lambda: server.stats.open == 0 and server2.stats.open == 0)
    assert server.stats.closed == server.stats.opened == 1
    assert server2.stats.closed == server2.stats.opened == 1
    assert all(agent.closed for agent in agents)
    assert not registry.is_open


async def test_shared_agent_survives_the_first_app_and_closes_with_the_last(
    server: UvicornServer,
) -> None:
    registry = AgentRegistry({"default": {"max_sockets": 1, "idle_timeout": 60}})
    app1 = make_app(server.url, registry=registry)
    app2 = make_app(server.url, registry=registry)

    async with serve(app1, app2) as hosted, httpx.AsyncClient() as client:
        first = await call_many(client, f"{hosted.urls[0]}/call", 3)
        await hosted.stop(0)
        assert registry.is_open
        assert server.stats.open == 1  # app 1 stopped; the shared socket is still there

        after = await call_many(client, f"{hosted.urls[1]}/call", 3)
        assert {r["port"] for r in after} == {r["port"] for r in first}  # same socket reused

        await hosted.stop(1)
        assert await wait_until(lambda: server.stats.open == 0)

    assert server.stats.opened == 1
    assert server.stats.closed == 1
    assert not registry.is_open


async def test_global_agent_is_shared_and_closed_by_the_last_app(server: UvicornServer) -> None:
    app1 = make_app(server.url)  # no registry, no agent: the global agent
    app2 = make_app(server.url)

    async with serve(app1, app2) as hosted, httpx.AsyncClient() as client:
        one = await call_many(client, f"{hosted.urls[0]}/call", 1)
        shared = global_agent()
        assert one[0]["agent"] == id(shared)
        await hosted.stop(0)
        assert not shared.closed
        two = await call_many(client, f"{hosted.urls[1]}/call", 1)
        assert two[0]["agent"] == id(shared)
        assert two[0]["port"] == one[0]["port"]
        await hosted.stop(1)
        assert shared.closed

    assert await wait_until(lambda: server.stats.open == 0)
    assert server.stats.opened == 1
    assert global_agent() is not shared  # a fresh one for whoever asks next


async def test_app_lifespan_runs_inside_the_agents_lifetime_and_its_state_reaches_handlers(
    server: UvicornServer,
) -> None:
    import contextlib

    registry = AgentRegistry({"default": {"idle_timeout": 60}})
    seen: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        agent = registry.get()  # already open when the app's own startup runs
        seen["startup_status"] = (await agent.get(f"{server.url}/peer")).status
        yield {"greeting": "hello"}
        seen["closed_during_app_shutdown"] = agent.closed
        seen["status_during_app_shutdown"] = (await agent.get(f"{server.url}/peer")).status

    async def handler(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting, "agent": id(request.state.agent)})

    app = Starlette(
        routes=[Route("/", handler)],
        lifespan=lifespan,
        middleware=[Middleware(AgentMiddleware, registry=registry)],
    )
    async with serve(app) as hosted, httpx.AsyncClient() as client:
        body = (await client.get(hosted.urls[0])).json()
        agent = registry.get()

    assert body == {"greeting": "hello", "agent": id(agent)}
    assert seen == {
        "startup_status": 200,
        "closed_during_app_shutdown": False,
        "status_during_app_shutdown": 200,
    }
    assert agent.closed
    assert await wait_until(lambda: server.stats.open == 0)
    assert server.stats.opened == 1  # the same socket served startup, shutdown and nothing else


async def test_app_without_lifespan_support_still_gets_agents_opened_and_closed(
    server: UvicornServer,
) -> None:
    registry = AgentRegistry({"default": {"idle_timeout": 60}})

    async def raw_app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"  # raises on lifespan: "unsupported", by convention
        agent = scope["state"]["agent"]
        response = await agent.get(f"{server.url}/peer")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": response.content})

    app = AgentMiddleware(raw_app, registry=registry)
    async with serve(app) as hosted, httpx.AsyncClient() as client:
        assert (await client.get(hosted.urls[0])).status_code == 200
        assert registry.is_open
        agent = registry.get()

    assert agent.closed
    assert await wait_until(lambda: server.stats.open == 0)
    assert server.stats.closed == 1


async def test_unknown_route_agent_name_fails_startup() -> None:
    registry = AgentRegistry({"payments": {}})
    app = make_app(
        "http://127.0.0.1:9",
        registry=registry,
        route_middleware=[Middleware(AgentMiddleware, agent="paymnts")],
    )
    with pytest.raises(RuntimeError, match="did not start"):
        async with serve(app):
            pass  # pragma: no cover
    assert not registry.is_open  # nothing left open by the failed startup


async def test_requests_not_using_the_agent_open_no_socket(server: UvicornServer) -> None:
    app = make_app(server.url, registry=AgentRegistry())
    async with serve(app) as hosted, httpx.AsyncClient() as client:
        for _ in range(5):
            assert (await client.get(f"{hosted.urls[0]}/noop")).text == "ok"
    assert server.stats.opened == 0


async def test_graceful_close_waits_for_in_flight_requests(server: UvicornServer) -> None:
    registry = AgentRegistry()
    registry.open()
    agent = registry.get()
    statuses: list[int] = []

    async def slow() -> None:
        statuses.append((await agent.get(f"{server.url}/slow?delay=0.3")).status)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        assert await wait_until(lambda: agent.stats().active == 1)
        await registry.close(shutdown_timeout=5)
        assert agent.closed
    assert statuses == [200]


async def test_graceful_close_gives_up_after_shutdown_timeout(server: UvicornServer) -> None:
    registry = AgentRegistry()
    registry.open()
    agent = registry.get()
    errors: list[BaseException] = []

    async def slow() -> None:
        try:
            await agent.get(f"{server.url}/slow?delay=3")
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        assert await wait_until(lambda: agent.stats().active == 1)
        with anyio.fail_after(2):
            await registry.close(shutdown_timeout=0.1)
        assert agent.closed
    assert len(errors) == 1
    assert await wait_until(lambda: server.stats.open == 0)
