"""Stale sockets and the retry of idempotent requests (issue 2, behaviour 5)."""

from __future__ import annotations

import anyio
import pytest
from servers import RawConnection, RawServer, UvicornServer, keep_alive_handler, response_bytes

from starlette_agent import Agent, RemoteProtocolError

pytestmark = pytest.mark.anyio


async def test_socket_closed_by_server_while_idle_is_not_reused(
    short_keep_alive_server: UvicornServer,
) -> None:
    server = short_keep_alive_server
    async with Agent(idle_timeout=10) as agent:
        assert (await agent.get(f"{server.url}/peer")).status == 200
        await anyio.sleep(1.5)  # uvicorn closes the idle connection after 1 s
        assert server.stats.closed == 1
        response = await agent.get(f"{server.url}/peer")
        assert response.status == 200
        assert response.reused_socket is False
        assert server.stats.opened == 2
        # Detected before reuse: no request was sent on the dead socket.
        assert agent.stats().retries == 0
        assert agent.stats().errors == 0


def _second_request_dies_silently(respond_on_new: bool = True) -> object:
    """Connection 0 answers one request, then closes on the next before sending a byte."""

    async def handler(conn: RawConnection) -> None:
        if conn.index > 0:
            if respond_on_new:
                await keep_alive_handler(conn)
            else:
                await conn.read_request()  # and close without a byte
            return
        request = await conn.read_request()
        assert request is not None
        await conn.send(response_bytes(b"first"))
        await conn.read_request()

    return handler


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
async def test_idempotent_request_failing_on_reused_socket_is_retried_once(
    raw_server: RawServer, method: str
) -> None:
    raw_server.handler = _second_request_dies_silently()  # type: ignore[assignment]
    async with Agent() as agent:
        first = await agent.get(raw_server.url)
        assert first.content == b"first"
        response = await agent.request(method, f"{raw_server.url}/again")
        assert response.status == 200
        assert response.reused_socket is False
        assert raw_server.stats.opened == 2
        assert raw_server.stats.requests == 3
        assert agent.stats().retries == 1


async def test_post_failing_on_reused_socket_is_not_retried(raw_server: RawServer) -> None:
    raw_server.handler = _second_request_dies_silently()  # type: ignore[assignment]
    async with Agent() as agent:
        await agent.get(raw_server.url)
        with pytest.raises(RemoteProtocolError, match="reused") as caught:
            await agent.post(f"{raw_server.url}/submit", content=b"payload")
        assert raw_server.origin in str(caught.value)
        assert raw_server.stats.opened == 1
        assert raw_server.stats.requests == 2
        assert agent.stats().retries == 0
        assert agent.stats().active == 0
        # The agent still works afterwards.
        assert (await agent.get(raw_server.url)).status == 200


async def test_retry_happens_only_once(raw_server: RawServer) -> None:
    raw_server.handler = _second_request_dies_silently(respond_on_new=False)  # type: ignore[assignment]
    async with Agent() as agent:
        await agent.get(raw_server.url)
        with pytest.raises(RemoteProtocolError):
            await agent.get(raw_server.url)
        # The reused socket, then one fresh one: a failure on a fresh socket is not retried.
        assert raw_server.stats.opened == 2
        assert raw_server.stats.requests == 3
        assert agent.stats().active == 0


async def test_failure_after_response_bytes_is_not_retried(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response_bytes(b"first"))
        if await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")

    raw_server.handler = handler
    async with Agent() as agent:
        await agent.get(raw_server.url)
        with pytest.raises(RemoteProtocolError) as caught:
            await agent.get(raw_server.url)
        assert raw_server.origin in str(caught.value)
        assert raw_server.stats.opened == 1
        assert agent.stats().retries == 0


async def test_server_closing_after_response_without_connection_close(
    raw_server: RawServer,
) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response_bytes(b"once"))  # then close, without saying so

    raw_server.handler = handler
    async with Agent() as agent:
        for _ in range(5):
            response = await agent.get(raw_server.url)
            assert response.content == b"once"
        assert raw_server.stats.opened == 5
        assert agent.stats().active == 0
