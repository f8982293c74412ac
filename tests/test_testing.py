"""starlette_agent.testing: MockAgent answers in process; override_agent swaps an app's agent."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from starlette_agent import Agent, ConnectError
from starlette_agent._dependency import agent_dependency, get_agent
from starlette_agent._registry import AgentRegistry
from starlette_agent._setup_errors import UnknownAgentName
from starlette_agent.middleware import AgentMiddleware
from starlette_agent.testing import MockAgent, UnmatchedRequest, override_agent

pytestmark = pytest.mark.anyio


async def test_intercept_replies_and_records_the_request() -> None:
    async with MockAgent() as mock:
        interceptor = mock.intercept("GET", "http://upstream/users/1").reply(
            200, json={"id": 1}, headers={"x-source": "mock"}
        )
        response = await mock.get("http://upstream/users/1", headers={"x-trace": "t1"})

    assert response.status == 200
    assert response.json() == {"id": 1}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-source"] == "mock"
    assert response.url == "http://upstream/users/1"
    [call] = interceptor.calls
    assert call.method == "GET"
    assert call.headers["x-trace"] == "t1"
    assert mock.requests == [call]


async def test_interceptor_answers_once_by_default_then_times_and_persist() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream/once").reply(204)
        mock.intercept("POST", "http://upstream/twice").reply(201).times(2)
        mock.intercept("*", "http://upstream/always").reply(200).persist()

        assert (await mock.get("http://upstream/once")).status == 204
        with pytest.raises(UnmatchedRequest):
            await mock.get("http://upstream/once")
        assert [(await mock.post("http://upstream/twice")).status for _ in range(2)] == [201, 201]
        with pytest.raises(UnmatchedRequest):
            await mock.post("http://upstream/twice")
        for method in ("GET", "DELETE", "PUT", "GET"):
            assert (await mock.request(method, "http://upstream/always")).status == 200


async def test_matching_is_on_origin_path_and_query_when_given() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream:8080/search?q=a&page=2").reply(200, content="hit")
        mock.intercept("GET", "http://upstream/any-query").reply(200).persist()
        mock.intercept("GET", re.compile(r"/items/\d+$")).reply(200, content="item").persist()

        assert (await mock.get("http://upstream:8080/search?page=2&q=a")).text == "hit"
        assert (await mock.get("http://upstream/any-query?x=1")).status == 200
        assert (await mock.get("http://elsewhere/items/42")).text == "item"
        with pytest.raises(UnmatchedRequest):
            await mock.get("http://upstream/search?q=a&page=2")  # port 80, not 8080
        with pytest.raises(UnmatchedRequest):
            await mock.get("http://upstream/items/abc")


async def test_reply_with_error_raises_it() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream/").reply_with_error(ConnectError("refused"))
        with pytest.raises(ConnectError, match="refused"):
            await mock.get("http://upstream/")


async def test_unmatched_request_lists_what_was_expected_and_opens_no_socket() -> None:
    async with MockAgent() as mock:
        mock.intercept("POST", "http://upstream/orders").reply(201)
        with pytest.raises(UnmatchedRequest) as caught:
            await mock.get("http://127.0.0.1:9/nothing")
        message = str(caught.value)
        assert "no answer for GET http://127.0.0.1:9/nothing" in message
        assert "<Interceptor POST http://upstream/orders (1 left, 0 calls)>" in message
        assert mock.stats().connections_created == 0


async def test_assert_no_pending_interceptors() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream/a").reply(200)
        mock.intercept("GET", "http://upstream/b").reply(200).persist()
        with pytest.raises(AssertionError, match=r"2 interceptor\(s\) were not used up"):
            mock.assert_no_pending_interceptors()
        await mock.get("http://upstream/a")
        await mock.get("http://upstream/b")
        mock.assert_no_pending_interceptors()


async def test_mount_routes_an_origin_into_an_asgi_app() -> None:
    async def user(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "id": request.path_params["user_id"],
                "q": request.query_params.get("q"),
                "body": body.decode(),
                "host": request.headers["host"],
            },
            status_code=201,
        )

    users = Starlette(routes=[Route("/users/{user_id}", user, methods=["POST"])])
    async with MockAgent() as mock:
        mock.mount("http://users:8000", users)
        response = await mock.post("http://users:8000/users/7?q=x", content=b"hello")
        assert response.status == 201
        assert response.json() == {"id": "7", "q": "x", "body": "hello", "host": "users:8000"}
        with pytest.raises(UnmatchedRequest, match="<Mount http://users:8000>"):
            await mock.get("http://users:9000/users/7")


async def test_streamed_responses_work_on_a_mock() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream/big").reply(200, content=b"x" * 1000)
        async with mock.stream("GET", "http://upstream/big") as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert body == b"x" * 1000


async def test_allow_network_sends_unmatched_requests_for_real(server: Any) -> None:
    async with MockAgent(allow_network=True) as mock:
        mock.intercept("GET", f"{server.url}/mocked").reply(299)
        assert (await mock.get(f"{server.url}/mocked")).status == 299
        real = await mock.post(f"{server.url}/echo", content=b"body")
        assert real.json()["body"] == "body"
    assert server.stats.requests == 1  # only the unmatched one reached the server


# --------------------------------------------------------------------------- override_agent


def agent_app(registry: AgentRegistry) -> Starlette:
    async def handler(request: Request) -> JSONResponse:
        agent = await get_agent(request)
        payments = await agent_dependency("payments")(request)
        response = await agent.get("http://upstream/hello")
        return JSONResponse(
            {"body": response.text, "same": agent is request.state.agent, "pay": id(payments)}
        )

    async def pay(request: Request) -> JSONResponse:
        return JSONResponse({"agent": id(request.state.agent)})

    return Starlette(
        routes=[
            Route("/", handler),
            Route("/pay", pay, middleware=[Middleware(AgentMiddleware, agent="payments")]),
        ],
        middleware=[Middleware(AgentMiddleware, registry=registry)],
    )


def test_override_agent_on_a_running_app_and_undo() -> None:
    registry = AgentRegistry({"payments": {}})
    app = agent_app(registry)
    mock = MockAgent()
    mock.intercept("GET", "http://upstream/hello").reply(200, content="mocked").persist()
    with TestClient(app) as client:
        with override_agent(app, mock):
            body = client.get("/").json()
            assert body["body"] == "mocked"
            assert body["same"] is True
        # A second override (an empty mock) replaces the first, then the first comes back.
        with override_agent(app, MockAgent()), pytest.raises(UnmatchedRequest):
            client.get("/")
        real = registry.get()
        assert not real.closed
    assert not registry.is_open
    assert real.closed
    assert not mock.closed  # an override is the caller's to close


def test_override_agent_by_name_before_startup_reaches_routes_and_dependencies() -> None:
    registry = AgentRegistry({"payments": {}})
    app = agent_app(registry)
    mock = MockAgent()
    mock.intercept("GET", "http://upstream/hello").reply(200, content="default").persist()
    payments = MockAgent()
    with override_agent(app, payments, name="payments"), TestClient(app) as client:
        assert client.get("/pay").json() == {"agent": id(payments)}
        with override_agent(app, mock):
            assert client.get("/").json()["pay"] == id(payments)
    with TestClient(app) as client:
        assert client.get("/pay").json() == {"agent": id(registry.get("payments"))}


def test_override_agent_needs_the_middleware() -> None:
    app = Starlette(routes=[])
    with pytest.raises(ValueError, match="has no AgentMiddleware"), override_agent(app, Agent()):
        pass  # pragma: no cover


def test_override_agent_with_an_unknown_name_raises_listing_the_known_ones() -> None:
    app = agent_app(AgentRegistry({"payments": {}}))
    with (
        pytest.raises(UnknownAgentName, match=r"'paymnets'.*known names: 'default', 'payments'"),
        override_agent(app, MockAgent(), name="paymnets"),
    ):
        pass  # pragma: no cover


def test_override_agent_knows_the_names_of_a_mounted_apps_registry() -> None:
    inner = AgentRegistry({"search": {}})

    async def search(request: Request) -> JSONResponse:
        return JSONResponse({"agent": id(await agent_dependency("search")(request))})

    mounted = Starlette(
        routes=[Route("/", search)], middleware=[Middleware(AgentMiddleware, registry=inner)]
    )
    app = Starlette(
        routes=[Mount("/v2", app=mounted)],
        middleware=[Middleware(AgentMiddleware, registry=AgentRegistry())],
    )
    mock = MockAgent()
    with override_agent(app, mock, name="search"), TestClient(app) as client:
        assert client.get("/v2/").json() == {"agent": id(mock)}
