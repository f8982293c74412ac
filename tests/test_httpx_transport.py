"""``AgentTransport``: httpx2 and httpx clients over an agent's pools. Reuse, limits, stale
sockets, streaming both ways, timeouts and errors through each library's client, against real
servers; the agent's ``stats()`` shows the traffic."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Annotated, Any

import anyio
import httpx
import httpx2
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from helpers import assert_settled
from servers import (
    RawConnection,
    RawServer,
    UvicornServer,
    encoded_body,
    response_bytes,
    wait_until,
)
from starlette.requests import Request as StarletteRequest

from starlette_agent import (
    Agent,
    AgentClosed,
    AgentError,
    AgentMiddleware,
    AgentOptions,
    AgentTimeout,
    BlockedAddress,
    ConnectError,
    ConnectTimeout,
    InvalidRequest,
    PoolTimeout,
    ProxyError,
    ReadTimeout,
    RemoteProtocolError,
    Request,
    RequestBodyError,
    Response,
    ResponseTooLarge,
    WriteTimeout,
)
from starlette_agent.fastapi import AgentDep
from starlette_agent.httpx import AgentTransport

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["httpx2", "httpx"])
def library(request: pytest.FixtureRequest) -> ModuleType:
    return pytest.importorskip(request.param)


def client(library: ModuleType, agent: Agent, **options: Any) -> Any:
    return library.AsyncClient(transport=AgentTransport(agent), **options)


async def test_requests_share_the_agents_sockets(
    library: ModuleType, server: UvicornServer
) -> None:
    async with Agent() as agent, client(library, agent, base_url=server.url) as http:
        for _ in range(5):
            response = await http.get("/echo", params={"q": "1"})
            assert response.status_code == 200
        seen = dict(response.json()["headers"])
        stats = agent.stats()
        assert (stats.requests, stats.connections_created, stats.connections_reused) == (5, 1, 4)
        assert_settled(agent)
    assert (server.stats.opened, server.stats.requests) == (1, 5)
    # The client's own headers, not the agent's defaults.
    assert seen["user-agent"].startswith(f"python-{library.__name__}/")
    assert response.json()["query"] == "q=1"
    assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"


async def test_the_agents_limits_hold(library: ModuleType, server: UvicornServer) -> None:
    statuses: list[int] = []
    async with Agent(max_sockets=2) as agent, client(library, agent) as http:

        async def one() -> None:
            statuses.append((await http.get(f"{server.url}/slow?delay=0.02")).status_code)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
        assert statuses == [200] * 20
        assert agent.stats().connections_created == 2
    assert server.stats.max_open == 2


async def test_a_socket_the_server_closed_is_not_reused(
    library: ModuleType, short_keep_alive_server: UvicornServer
) -> None:
    server = short_keep_alive_server
    async with Agent(idle_timeout=10) as agent, client(library, agent) as http:
        assert (await http.get(f"{server.url}/peer")).status_code == 200
        await anyio.sleep(1.5)  # uvicorn closes the idle socket after 1 s
        assert (await http.get(f"{server.url}/peer")).status_code == 200
        assert agent.stats().errors == 0
    assert server.stats.opened == 2


async def test_a_socket_lost_as_it_is_reused_is_retried(
    library: ModuleType, raw_server: RawServer
) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response_bytes(b"first"))
        if conn.index == 0:
            await conn.read_request()  # and close without answering
        else:
            while await conn.read_request() is not None:
                await conn.send(response_bytes(b"again"))

    raw_server.handler = handler
    async with Agent() as agent, client(library, agent) as http:
        assert (await http.get(raw_server.url)).text == "first"
        assert (await http.get(raw_server.url)).text == "first"  # the retry's new socket
        assert agent.stats().retries == 1
    assert raw_server.stats.opened == 2


async def test_bodies_stream_both_ways(library: ModuleType, server: UvicornServer) -> None:
    async def upload() -> AsyncIterator[bytes]:
        for index in range(3):
            yield f"part-{index};".encode()
            await anyio.sleep(0)

    async with Agent() as agent, client(library, agent) as http:
        response = await http.post(f"{server.url}/echo", content=upload())
        seen = response.json()
        assert seen["body"] == "part-0;part-1;part-2;"
        assert dict(seen["headers"])["transfer-encoding"] == "chunked"
        known = await http.post(f"{server.url}/echo", content=b"12345")
        assert dict(known.json()["headers"])["content-length"] == "5"
        async with http.stream("GET", f"{server.url}/stream/4") as streamed:
            lines = [line async for line in streamed.aiter_lines()]
        assert lines == ["chunk-0", "chunk-1", "chunk-2", "chunk-3"]
        assert agent.stats().idle == 1  # read to the end: back in the pool
        async with http.stream("GET", f"{server.url}/stream/50?interval=0.01") as streamed:
            async for _ in streamed.aiter_bytes():
                break  # leaving early closes that socket: it is mid-body
        stats = agent.stats()
        assert (stats.idle, stats.active, stats.connections_closed) == (0, 0, 1)
    assert await wait_until(lambda: server.stats.closed == 1)


async def test_bodies_are_decoded_once_by_the_client(
    library: ModuleType, server: UvicornServer
) -> None:
    async with Agent() as agent, client(library, agent) as http:
        response = await http.get(f"{server.url}/encoded/gzip")
        echoed = dict((await http.get(f"{server.url}/echo")).json()["headers"])
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == encoded_body(100)
    assert "gzip" in echoed["accept-encoding"]  # the client's own


async def test_redirects_are_the_clients_to_follow(
    library: ModuleType, server: UvicornServer
) -> None:
    url = f"{server.url}/redirect/302?to=/echo"
    async with Agent(follow_redirects=True) as agent, client(library, agent) as http:
        assert (await http.get(url)).status_code == 302  # the agent followed nothing
        followed = await http.get(url, follow_redirects=True)
        assert (followed.status_code, len(followed.history)) == (200, 1)
        assert agent.stats().requests == 3


async def test_timeouts_come_from_the_request(library: ModuleType, server: UvicornServer) -> None:
    async with Agent(max_sockets=1, read_timeout=30) as agent, client(library, agent) as http:
        with pytest.raises(library.ReadTimeout) as caught:
            await http.get(f"{server.url}/slow?delay=2", timeout=0.05)
        assert isinstance(caught.value.__cause__, ReadTimeout)
        assert caught.value.request.url == f"{server.url}/slow?delay=2"
        async with http.stream("GET", f"{server.url}/stream/2"):  # holds the only socket
            with pytest.raises(library.PoolTimeout, match="no socket became free"):
                await http.get(f"{server.url}/echo", timeout=library.Timeout(5, pool=0.05))
        assert (await http.get(f"{server.url}/echo")).status_code == 200


async def test_agent_errors_become_the_librarys(library: ModuleType, raw_server: RawServer) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]

    async def garbage(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"this is not HTTP\r\n\r\n")

    raw_server.handler = garbage
    async with Agent() as agent, client(library, agent) as http:
        with pytest.raises(library.ConnectError):
            await http.get(f"http://127.0.0.1:{closed_port}/")
        with pytest.raises(library.RemoteProtocolError) as caught:
            await http.get(raw_server.url)
        assert isinstance(caught.value.__cause__, RemoteProtocolError)
        with pytest.raises(library.LocalProtocolError, match="Upgrade"):
            await http.get(raw_server.url, headers={"Upgrade": "websocket"})
        assert_settled(agent)


async def test_a_connect_timeout_becomes_the_librarys(library: ModuleType) -> None:
    async def never_connects(origin: object) -> Any:
        await anyio.sleep(10)

    async with Agent(connector=never_connects) as agent, client(library, agent) as http:
        with pytest.raises(library.ConnectTimeout) as caught:
            await http.get("http://upstream.test/", timeout=library.Timeout(5, connect=0.05))
        assert isinstance(caught.value.__cause__, ConnectTimeout)


async def test_a_read_timeout_mid_body_becomes_the_librarys(
    library: ModuleType, server: UvicornServer
) -> None:
    async with Agent() as agent, client(library, agent) as http:
        timeout = library.Timeout(5, read=0.1)
        chunks: list[bytes] = []
        url = f"{server.url}/stream/5?interval=1"
        with pytest.raises(library.ReadTimeout) as caught:
            async with http.stream("GET", url, timeout=timeout) as r:
                async for chunk in r.aiter_bytes():
                    chunks.append(chunk)
        assert chunks == [b"chunk-0\n"]  # the head and a first chunk came: timed out mid-body
        assert isinstance(caught.value.__cause__, ReadTimeout)
        stats = agent.stats()
        assert (stats.active, stats.idle, stats.connections_closed) == (0, 0, 1)
    assert await wait_until(lambda: server.stats.closed == 1)


class FailingAgent(Agent):
    """An agent whose every request fails with ``error``, at the public seam."""

    def __init__(self, error: AgentError) -> None:
        super().__init__()
        self.error = error

    async def dispatch(self, request: Request) -> Response:
        raise self.error


ORIGIN = "http://upstream.test:80"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectTimeout("connect", origin=ORIGIN), "ConnectTimeout"),
        (ReadTimeout("read", origin=ORIGIN), "ReadTimeout"),
        (WriteTimeout("write", origin=ORIGIN), "WriteTimeout"),
        (PoolTimeout("pool", origin=ORIGIN), "PoolTimeout"),
        (AgentTimeout("some phase", origin=ORIGIN), "TimeoutException"),
        (ProxyError("refused", proxy="http://proxy.test:3128", status=407), "ProxyError"),
        (ConnectError("refused", origin=ORIGIN), "ConnectError"),
        (BlockedAddress("blocked", host="upstream.test", address="10.0.0.1"), "ConnectError"),
        (RemoteProtocolError("garbage", origin=ORIGIN), "RemoteProtocolError"),
        (RequestBodyError("short body", origin=ORIGIN), "LocalProtocolError"),
        (InvalidRequest("bad header"), "LocalProtocolError"),
        (AgentClosed("closed", origin=ORIGIN), "TransportError"),
        (ResponseTooLarge("too large", origin=ORIGIN), "TransportError"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, AgentError) else value,
)
async def test_each_agent_error_becomes_the_librarys(
    library: ModuleType, error: AgentError, expected: str
) -> None:
    async with FailingAgent(error) as agent, client(library, agent) as http:
        with pytest.raises(library.TransportError) as caught:
            await http.get("http://upstream.test/users/1")
    assert type(caught.value) is getattr(library, expected)
    assert caught.value.__cause__ is error
    assert str(caught.value) == str(error)
    assert caught.value.request.url == "http://upstream.test/users/1"


# Each in a process of its own: which libraries are installed is decided at import.
WITH_ONE_LIBRARY = """
import sys

import anyio

absent, present, url = sys.argv[1:]
sys.modules[absent] = None  # as if it were not installed
import starlette_agent.httpx as module
from starlette_agent import Agent
from starlette_agent.httpx import AgentTransport

library = __import__(present)
assert list(module.LIBRARIES) == [present], module.LIBRARIES


async def main() -> None:
    async with Agent() as agent:
        async with library.AsyncClient(transport=AgentTransport(agent)) as http:
            assert (await http.get(url + "/echo")).status_code == 200
        print(present, agent.stats().requests)


anyio.run(main)
"""

WITH_NEITHER = """
import sys

sys.modules["httpx"] = sys.modules["httpx2"] = None
import starlette_agent  # the package itself needs neither

try:
    import starlette_agent.httpx
except ImportError as error:
    print(error)
"""


def run_python(code: str, *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(("absent", "present"), [("httpx", "httpx2"), ("httpx2", "httpx")])
def test_the_transport_works_with_whichever_library_is_installed(
    server: UvicornServer, absent: str, present: str
) -> None:
    assert run_python(WITH_ONE_LIBRARY, absent, present, server.url) == f"{present} 1"
    assert server.stats.requests == 1


def test_neither_library_is_a_dependency() -> None:
    assert run_python(WITH_NEITHER) == (
        "starlette_agent.httpx needs httpx2 (or httpx): pip install 'starlette-agent[httpx]'"
    )
    imported = run_python("import sys, starlette_agent; print(sorted(sys.modules))")
    assert "httpx" not in imported.split("'") and "httpx2" not in imported.split("'")


def test_the_transport_is_an_async_transport_of_each_library() -> None:
    transport = AgentTransport(Agent())
    assert isinstance(transport, httpx2.AsyncBaseTransport)
    assert isinstance(transport, httpx.AsyncBaseTransport)
    with pytest.raises(TypeError, match="AgentTransport takes an Agent"):
        AgentTransport(json)  # type: ignore[arg-type]


# ------------------------------------------------------------------ in a FastAPI app


async def http_client(
    request: StarletteRequest, agent: AgentDep
) -> AsyncIterator[httpx2.AsyncClient]:
    """A dependency: an httpx2 client over the app's agent (which the middleware injects)."""
    transport = AgentTransport(agent)
    base_url = request.app.state.upstream
    async with httpx2.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http


HttpClient = Annotated[httpx2.AsyncClient, Depends(http_client)]
app = FastAPI()
app.add_middleware(AgentMiddleware, agent=AgentOptions(max_sockets=2))


@app.get("/peer")
async def peer(http: HttpClient, agent: AgentDep) -> dict[str, Any]:
    response = await http.get("/peer")
    response.raise_for_status()
    return {"upstream": response.json(), "requests": agent.stats().requests}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_fastapi_handler_calls_through_an_injected_httpx2_client(
    server: UvicornServer, backend: str
) -> None:
    app.state.upstream = server.url
    with TestClient(app, backend=backend) as test_client:
        answers = [test_client.get("/peer").json() for _ in range(3)]
    assert [answer["requests"] for answer in answers] == [1, 2, 3]
    assert len({answer["upstream"]["port"] for answer in answers}) == 1  # one socket, reused
    assert server.stats.opened == 1
