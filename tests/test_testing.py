"""starlette_agent.testing: MockAgent answers in process; override_agent swaps an app's agent."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from servers import wait_until
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from test_docs import ROOT, code_blocks

from starlette_agent import (
    Agent,
    AgentClosed,
    BlockedAddress,
    ConnectError,
    InvalidOption,
    PoolTimeout,
    ReadTimeout,
    ResponseTooLarge,
)
from starlette_agent import Request as StarletteAgentRequest
from starlette_agent import Response as AgentResponse
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


# ------------------------------------------------------- the mock runs the agent's own machinery


async def test_stats_count_mocked_requests_and_errors() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream/ok").reply(200).times(2)
        mock.intercept("GET", "http://upstream/down").reply_with_error(ReadTimeout("slow"))
        await mock.get("http://upstream/ok")
        await mock.get("http://upstream/ok")
        with pytest.raises(ReadTimeout, match="slow"):
            await mock.get("http://upstream/down")
        stats = mock.stats()
    assert (stats.requests, stats.errors) == (3, 1)
    # One socket carried all three; after the failure it was in doubt, so closed, not kept.
    assert (stats.connections_created, stats.connections_reused) == (1, 2)
    assert (stats.connections_closed, stats.idle) == (1, 0)


async def test_a_connect_error_reply_opens_no_socket() -> None:
    async with MockAgent() as mock:
        mock.intercept("GET", "http://down.internal/").reply_with_error(
            ConnectError("refused", origin="http://down.internal:80")
        )
        with pytest.raises(ConnectError, match="refused"):
            await mock.get("http://down.internal/")
        stats = mock.stats()
    assert (stats.requests, stats.errors, stats.connections_created) == (1, 1, 0)
    assert stats.active == 0  # the reserved slot was given back


async def test_reused_socket_follows_a_simulated_pool() -> None:
    url = "http://upstream/users/1"
    async with MockAgent() as mock:
        mock.intercept("GET", url).reply(200, json={"id": 1}).persist()
        mock.intercept("GET", "http://other/").reply(200)
        reused = [(await mock.get(url)).reused_socket for _ in range(3)]
        assert (await mock.get("http://other/")).reused_socket is False  # another origin
        stats = mock.stats()
        assert stats.origins[mock.get_name(url)].idle == 1
    assert reused == [False, True, True]
    assert (stats.connections_created, stats.connections_reused) == (2, 2)


async def test_connection_close_and_keep_alive_false_do_not_reuse() -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {"connection": request.headers.get("connection"), "port": request.client.port}  # type: ignore[union-attr]
        )

    async with MockAgent() as mock:
        mock.intercept("GET", "http://upstream/").reply(
            200, headers={"connection": "close"}
        ).persist()
        assert [(await mock.get("http://upstream/")).reused_socket for _ in range(2)] == [
            False,
            False,
        ]
        assert mock.stats().connections_created == 2

    async with MockAgent(keep_alive=False) as mock:
        mock.mount("http://users", Starlette(routes=[Route("/", echo)]))
        first = await mock.get("http://users/")
        second = await mock.get("http://users/")
        stats = mock.stats()
    assert first.json()["connection"] == "close"  # the app saw what the agent sent
    assert first.json()["port"] != second.json()["port"]  # two sockets
    assert not second.reused_socket
    assert (stats.connections_created, stats.connections_reused) == (2, 0)


async def test_max_sockets_queues_mocked_requests_as_in_production() -> None:
    async with MockAgent(max_sockets=1) as mock:
        mock.intercept("GET", "http://upstream/").reply(200, content=b"x").persist()
        results: list[bool] = []

        async def second() -> None:
            results.append((await mock.get("http://upstream/")).reused_socket)

        async with (
            mock.stream("GET", "http://upstream/") as holding,
            anyio.create_task_group() as group,
        ):
            group.start_soon(second)
            assert await wait_until(lambda: mock.stats().queued == 1)
            assert mock.stats().active == 1
            await holding.aread()  # the socket goes back, and to the queued request
        stats = mock.stats()
    assert results == [True]
    assert (stats.connections_created, stats.connections_reused) == (1, 1)


async def test_pool_timeout_applies_to_mocked_requests() -> None:
    async with MockAgent(max_sockets=1, pool_timeout=0.05) as mock:
        mock.intercept("GET", "http://upstream/").reply(200).persist()
        async with mock.stream("GET", "http://upstream/"):
            with pytest.raises(PoolTimeout):
                await mock.get("http://upstream/")


async def test_max_response_size_applies_to_mocked_bodies() -> None:
    async with MockAgent(max_response_size=10) as mock:
        mock.intercept("GET", "http://upstream/small").reply(200, content=b"x" * 10)
        mock.intercept("GET", "http://upstream/big").reply(200, content=b"x" * 11)
        assert (await mock.get("http://upstream/small")).content == b"x" * 10
        with pytest.raises(ResponseTooLarge, match="max_response_size=10"):
            await mock.get("http://upstream/big")
        stats = mock.stats()
    # The socket left mid-body was closed, not put back.
    assert (stats.connections_reused, stats.connections_closed, stats.idle) == (1, 1, 0)


async def test_a_closed_mock_raises_agent_closed() -> None:
    mock = MockAgent(allow_network=True)
    interceptor = mock.intercept("GET", "http://upstream/").reply(200).persist()
    assert (await mock.get("http://upstream/")).status == 200
    await mock.aclose()
    with pytest.raises(AgentClosed):
        await mock.get("http://upstream/")
    with pytest.raises(AgentClosed):
        await mock.get("http://127.0.0.1:9/unmatched")
    assert len(interceptor.calls) == 1  # a closed mock takes nothing in
    assert mock.stats().closed


async def test_aclose_closes_the_simulated_sockets() -> None:
    mock = MockAgent()
    mock.intercept("GET", "http://upstream/").reply(200, content=b"x" * 100_000).times(2)
    await mock.get("http://upstream/")
    async with mock.stream("GET", "http://upstream/") as response:  # more than one read
        await mock.aclose()
        with pytest.raises(AgentClosed):
            await response.aread()
    stats = mock.stats()
    assert (stats.connections_created, stats.connections_closed, stats.idle) == (1, 1, 0)


async def test_timeouts_apply_to_a_mounted_app() -> None:
    never = anyio.Event()

    async def stuck(request: Request) -> PlainTextResponse:
        await never.wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async with MockAgent() as mock:
        mock.mount("http://slow", Starlette(routes=[Route("/", stuck)]))
        with anyio.fail_after(5), pytest.raises(ReadTimeout, match="http://slow:80"):
            await mock.get("http://slow/", timeout=0.05)
        assert mock.stats().errors == 1


async def test_a_mounted_app_streams_its_response() -> None:
    go_on = anyio.Event()
    finished: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"first;"
            await go_on.wait()
            yield b"second;"
            await anyio.sleep_forever()
            yield b"never"  # pragma: no cover
        finally:
            finished.append("stream closed")

    async def endless(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks())

    async with MockAgent() as mock:
        mock.mount("http://events", Starlette(routes=[Route("/", endless)]))
        with anyio.fail_after(5):
            async with mock.stream("GET", "http://events/") as response:
                pieces = response.aiter_bytes()
                assert await pieces.__anext__() == b"first;"  # before the app sent more
                go_on.set()
                assert await pieces.__anext__() == b"second;"
            # Leaving the block hung up: the app was cancelled and the socket closed.
            assert await wait_until(lambda: finished == ["stream closed"])
        stats = mock.stats()
    assert (stats.connections_created, stats.connections_closed) == (1, 1)


async def test_an_app_error_reaches_the_caller() -> None:
    async def broken(request: Request) -> PlainTextResponse:
        raise LookupError("fake upstream bug")

    async with MockAgent() as mock:
        mock.mount("http://broken", Starlette(routes=[Route("/", broken)]))
        with pytest.raises(LookupError, match="fake upstream bug"):
            await mock.get("http://broken/")


async def test_head_and_https_are_answered_like_a_real_server() -> None:
    async with MockAgent() as mock:
        mock.intercept("HEAD", "https://api.example/").reply(200, content=b"12345").times(2)
        first = await mock.head("https://api.example/")
        second = await mock.head("https://api.example/")
    assert first.content == b"" and first.headers["content-length"] == "5"
    assert second.reused_socket
    assert first.reason == "OK"


async def test_reply_refuses_what_no_server_could_send() -> None:
    interceptor = MockAgent().intercept("GET", "http://upstream/")
    with pytest.raises(InvalidOption, match="final status"):
        interceptor.reply(101)
    with pytest.raises(InvalidOption, match="cannot send these headers"):
        interceptor.reply(200, headers={"bad name": "x"})


async def test_unmatched_requests_pass_through_to_the_given_agent(server: Any) -> None:
    seen: list[str] = []

    class Recording(Agent):
        async def dispatch(self, request: StarletteAgentRequest) -> AgentResponse:
            seen.append(f"{request.method} {request.target.decode()}")
            return await super().dispatch(request)

    async with Recording() as real:
        async with MockAgent(agent=real, allow_network=True) as mock:
            mock.intercept("GET", f"{server.url}/mocked").reply(299)
            assert (await mock.get(f"{server.url}/mocked")).status == 299
            for _ in range(2):
                echoed = await mock.post(f"{server.url}/echo", content=b"body")
                assert echoed.json()["body"] == "body"
            assert echoed.reused_socket  # the real agent's socket, reused
            assert mock.stats().requests == 1  # the mock counts what it answered
        assert not real.closed  # the caller's agent stays the caller's
        assert real.stats().requests == 2
    assert seen == ["POST /echo", "POST /echo"]
    assert server.stats.requests == 2


async def test_a_given_agent_is_not_used_without_allow_network(server: Any) -> None:
    async with Agent() as real, MockAgent(agent=real) as mock:
        with pytest.raises(UnmatchedRequest):
            await mock.get(f"{server.url}/echo")
        assert real.stats().requests == 0
    assert server.stats.requests == 0


async def test_network_only_options_configure_the_agent_requests_pass_through(
    server: Any,
) -> None:
    async with MockAgent(allow_network=True, block_private_networks=True) as mock:
        mock.intercept("GET", f"{server.url}/mocked").reply(200)
        assert (await mock.get(f"{server.url}/mocked")).status == 200  # no address to check
        with pytest.raises(BlockedAddress):
            await mock.get(f"{server.url}/echo")
        assert mock.network_agent is not None and mock.network_agent.config.block_private_networks
    assert mock.network_agent.closed  # the mock made it, the mock closed it
    assert server.stats.requests == 0
    with pytest.raises(InvalidOption, match="agent=Agent"):
        MockAgent(connector=lambda origin: None)


async def test_a_streamed_upload_is_recorded_and_reaches_the_app() -> None:
    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            f"{request.headers.get('transfer-encoding')}:{await request.body()}"
        )

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 70_000
        yield b"b"

    async with MockAgent() as mock:
        mock.mount("http://files", Starlette(routes=[Route("/", upload, methods=["PUT"])]))
        response = await mock.put("http://files/", content=body())
    assert response.text.startswith("chunked:b'aaa")
    assert len(mock.requests[0].body) == 70_001


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_mock_serves_one_event_loop_after_another(backend: str) -> None:
    # TestClient runs each `with` block on an event loop of its own; a test suite's mock
    # outlives them. Sockets belong to a loop, so each loop's die with it.
    mock = MockAgent()
    mock.intercept("GET", "http://upstream/").reply(200).persist()

    async def twice() -> list[bool]:
        return [(await mock.get("http://upstream/")).reused_socket for _ in range(2)]

    assert anyio.run(twice, backend=backend) == [False, True]
    assert anyio.run(twice, backend=backend) == [False, True]
    stats = mock.stats()
    assert (stats.connections_created, stats.connections_closed, stats.idle) == (2, 2, 0)


def test_the_docs_example_prints_the_numbers_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/index.md runs three requests on a MockAgent and shows what that prints."""
    blocks = code_blocks(ROOT / "docs" / "index.md")
    [index] = [i for i, block in enumerate(blocks) if "agent.stats()" in block.code]
    shown = blocks[index + 1]
    assert shown.language == "text"
    exec(compile(blocks[index].code, blocks[index].where, "exec"), {"__name__": "docs_index"})
    assert capsys.readouterr().out == shown.code


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
