"""Message framing and when a socket goes back to the pool (issue 2, behaviour 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers import assert_settled
from servers import (
    RawConnection,
    RawServer,
    UvicornServer,
    keep_alive_handler,
    response_bytes,
    wait_until,
)

from starlette_agent import Agent, RemoteProtocolError

pytestmark = pytest.mark.anyio


async def test_connection_close_response_is_not_pooled(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/close")
        assert response.content == b"closing"
        assert agent.stats().idle == 0
        assert await wait_until(lambda: server.stats.closed == 1)
        second = await agent.get(f"{server.url}/peer")
        assert second.reused_socket is False
        assert server.stats.opened == 2


def _first_connection_then_keep_alive(first: bytes) -> object:
    """Connection 0 answers its first request with ``first`` and closes; others keep alive."""

    async def handler(conn: RawConnection) -> None:
        if conn.index > 0:
            await keep_alive_handler(conn)
            return
        await conn.read_request()
        await conn.send(first)

    return handler


async def test_http_10_response_is_not_pooled(raw_server: RawServer) -> None:
    raw_server.handler = _first_connection_then_keep_alive(  # type: ignore[assignment]
        response_bytes(b"old", version="1.0")
    )
    async with Agent() as agent:
        response = await agent.get(raw_server.url)
        assert response.http_version == "1.0"
        assert response.content == b"old"
        assert agent.stats().idle == 0
        second = await agent.get(raw_server.url)
        assert second.reused_socket is False
        assert second.http_version == "1.1"
        assert raw_server.stats.opened == 2
        assert agent.stats().retries == 0


async def test_close_delimited_body_is_read_to_the_end_and_not_pooled(
    raw_server: RawServer,
) -> None:
    body = b"no length, ends at close " * 1000
    raw_server.handler = _first_connection_then_keep_alive(  # type: ignore[assignment]
        response_bytes(body, content_length=False)
    )
    async with Agent() as agent:
        response = await agent.get(raw_server.url)
        assert response.content == body
        assert agent.stats().idle == 0
        second = await agent.get(raw_server.url)
        assert second.reused_socket is False
        assert raw_server.stats.opened == 2


async def test_chunked_response_is_decoded_and_socket_reused(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/stream/50")
        assert "content-length" not in response.headers
        assert response.text == "".join(f"chunk-{i}\n" for i in range(50))
        again = await agent.get(f"{server.url}/stream/1")
        assert again.reused_socket is True
        assert server.stats.opened == 1


async def test_large_content_length_body(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/bytes/1000000")
        assert len(response.content) == 1_000_000
        assert response.headers["content-length"] == "1000000"
        assert (await agent.get(f"{server.url}/bytes/0")).content == b""
        assert server.stats.opened == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_keep_the_socket(server: UvicornServer, status: int) -> None:
    async with Agent() as agent:
        for _ in range(3):
            response = await agent.get(f"{server.url}/status/{status}")
            assert response.status == status
            assert response.content == b""
        assert server.stats.opened == 1


async def test_head_has_no_body_and_keeps_the_socket(server: UvicornServer) -> None:
    async with Agent() as agent:
        head = await agent.head(f"{server.url}/bytes/100")
        assert head.headers["content-length"] == "100"
        assert head.content == b""
        body = await agent.get(f"{server.url}/bytes/5")
        assert body.content == b"xxxxx"
        assert body.reused_socket is True
        assert server.stats.opened == 1


async def test_informational_responses_are_skipped(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
            await conn.send(response_bytes(b"final", headers=[("X-Final", "yes")]))

    raw_server.handler = handler
    async with Agent() as agent:
        for _ in range(2):
            response = await agent.get(raw_server.url)
            assert response.status == 200
            assert response.headers["x-final"] == "yes"
            assert "link" not in response.headers
            assert response.content == b"final"
        assert raw_server.stats.opened == 1


async def test_async_iterable_body_is_sent_chunked(server: UvicornServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        for index in range(5):
            yield f"part-{index};".encode()

    async with Agent() as agent:
        response = await agent.post(f"{server.url}/echo", content=body())
        echo = response.json()
        assert echo["body"] == "".join(f"part-{i};" for i in range(5))
        assert ["transfer-encoding", "chunked"] in echo["headers"]
        assert not any(k == "content-length" for k, _ in echo["headers"])


async def test_async_iterable_body_arrives_chunked_on_the_wire(raw_server: RawServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defgh"

    async with Agent() as agent:
        response = await agent.put(f"{raw_server.url}/upload", content=body())
        assert response.status == 200
    request = raw_server.received[0]
    assert request.header("transfer-encoding") == "chunked"
    assert request.body == b"abcdefgh"
    assert request.raw.endswith(b"0\r\n\r\n")


async def test_bytes_body_has_content_length(raw_server: RawServer) -> None:
    async with Agent() as agent:
        await agent.post(f"{raw_server.url}/p", content=b"12345")
        await agent.get(f"{raw_server.url}/g")
    post, get = raw_server.received
    assert post.header("content-length") == "5"
    assert post.header("transfer-encoding") is None
    assert post.body == b"12345"
    assert post.http_version == "1.1"
    assert post.header("host") == f"127.0.0.1:{raw_server.port}"
    assert get.header("transfer-encoding") is None
    assert get.body == b""


async def test_a_response_with_both_framings_is_refused_and_its_socket_dropped(
    raw_server: RawServer,
) -> None:
    """RFC 9112 6.1: both framings "ought to be handled as an error" (a sign of smuggling);
    Node's parser refuses it, and so do both of ours."""

    async def both(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/both":
                await conn.send(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\n2\r\nok\r\n0\r\n\r\n"
                )
            else:
                await conn.send(response_bytes())

    raw_server.handler = both
    async with Agent() as agent:
        with pytest.raises(RemoteProtocolError, match=r"Transfer-Encoding.*Content-Length"):
            await agent.get(f"{raw_server.url}/both")
        assert_settled(agent)
        assert agent.stats().idle == 0
        second = await agent.get(f"{raw_server.url}/fine")
        assert second.reused_socket is False
        assert await wait_until(lambda: raw_server.stats.closed >= 1)


async def test_numeric_host_forms_reach_and_name_the_address(raw_server: RawServer) -> None:
    """A resolver reads these as 127.0.0.1: so do the Host header and the pool key."""
    port = raw_server.port
    hosts = ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "127.0.0.1"]
    async with Agent() as agent:
        for host in hosts:
            response = await agent.get(f"http://{host}:{port}/")
            assert response.status == 200
        assert len(agent.stats().origins) == 1
    assert [r.header("host") for r in raw_server.received] == [f"127.0.0.1:{port}"] * len(hosts)
    assert raw_server.stats.opened == 1
