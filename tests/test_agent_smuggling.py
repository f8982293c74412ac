"""The agent alone frames request bodies (RFC 9112 6.2, 6.3): caller headers cannot desync a socket.

A caller's ``Transfer-Encoding`` is refused; a caller's ``Content-Length`` is accepted only when
it is one decimal number that the body will honour. Headers that would switch the connection to
another protocol (``Upgrade``, the ``CONNECT`` method) are refused: the agent speaks HTTP/1.1 only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import assert_settled
from servers import RawConnection, RawServer, UvicornServer, response_bytes, wait_until

from starlette_agent import Agent, InvalidRequest, RequestBodyError

pytestmark = pytest.mark.anyio


async def _stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _content(kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "bytes":
        return b"12345"
    return _stream(b"12", b"345")


async def _refused(server: UvicornServer, method: str, match: str, **kwargs: Any) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest, match=match):
            await agent.request(method, f"{server.url}/echo", **kwargs)
        assert_settled(agent)
    assert server.stats.opened == 0


# --------------------------------------------------------------------------- Transfer-Encoding


@pytest.mark.parametrize("content", ["none", "bytes", "stream"])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Transfer-Encoding", "chunked"),
        ("transfer-encoding", "chunked"),
        ("TRANSFER-ENCODING", "Chunked"),
        ("Transfer-Encoding", "gzip, chunked"),
        ("Transfer-Encoding", "identity"),
        ("Transfer-Encoding", ""),
    ],
)
async def test_caller_transfer_encoding_is_refused(
    server: UvicornServer, content: str, name: str, value: str
) -> None:
    await _refused(
        server,
        "POST",
        "Transfer-Encoding is set by the agent",
        headers=[(name, value)],
        content=_content(content),
    )


# --------------------------------------------------------------------------- Content-Length


@pytest.mark.parametrize("content", ["bytes", "stream"])
@pytest.mark.parametrize(
    "values",
    [
        ["+5"],
        ["-5"],
        ["5 5"],
        ["5,5"],
        ["5, 5"],
        ["0x5"],
        ["5.0"],
        ["5e0"],
        [""],
        ["99999999999999999999"],
        ["5", "5"],
        ["5", "6"],
    ],
)
async def test_content_length_must_be_one_decimal_number(
    server: UvicornServer, content: str, values: list[str]
) -> None:
    await _refused(
        server,
        "POST",
        "Content-Length",
        headers=[("Content-Length", value) for value in values],
        content=_content(content),
    )


@pytest.mark.parametrize(
    ("method", "kwargs", "declared", "actual"),
    [
        ("POST", {"content": b"12345"}, "4", 5),
        ("POST", {"content": b"12345"}, "6", 5),
        ("POST", {"content": b""}, "1", 0),
        ("PUT", {"content": "héllo"}, "5", 6),
        ("POST", {"json": {"a": 1}}, "6", 7),
        ("GET", {}, "3", 0),
        ("POST", {}, "1", 0),
        ("DELETE", {}, "10", 0),
    ],
)
async def test_content_length_that_disagrees_with_the_body_is_refused(
    server: UvicornServer, method: str, kwargs: dict[str, Any], declared: str, actual: int
) -> None:
    await _refused(
        server,
        method,
        rf"Content-Length: {declared} does not match the body \({actual} bytes\)",
        headers={"Content-Length": declared},
        **kwargs,
    )


@pytest.mark.parametrize(
    ("method", "kwargs", "declared", "body"),
    [
        ("POST", {"content": b"12345"}, "5", b"12345"),
        ("POST", {"content": b"12345"}, "005", b"12345"),
        ("PUT", {"content": "héllo"}, "6", "héllo".encode()),
        ("POST", {"json": {"a": 1}}, "7", b'{"a":1}'),
        ("POST", {}, "0", b""),
        ("GET", {}, "0", b""),
        ("DELETE", {"content": b""}, "0", b""),
    ],
)
async def test_content_length_that_matches_the_body_is_sent_once(
    raw_server: RawServer, method: str, kwargs: dict[str, Any], declared: str, body: bytes
) -> None:
    async with Agent() as agent:
        response = await agent.request(
            method, raw_server.url, headers={"content-length": declared}, **kwargs
        )
        assert response.status == 200
        again = await agent.get(raw_server.url)
        assert again.reused_socket is True
    request = raw_server.received[0]
    assert [v for k, v in request.headers if k.lower() == "content-length"] == [str(len(body))]
    assert request.header("transfer-encoding") is None
    assert request.body == body
    assert raw_server.stats.opened == 1


async def test_get_without_content_length_sends_none(raw_server: RawServer) -> None:
    """A body-less request carries Content-Length only when asked (RFC 9110 8.6)."""
    async with Agent() as agent:
        await agent.get(raw_server.url)
        await agent.get(raw_server.url, headers={"Content-Length": "0"})
    plain, asked = raw_server.received
    assert plain.header("content-length") is None
    assert asked.header("content-length") == "0"


async def test_streamed_body_with_content_length_is_sent_with_that_length(
    raw_server: RawServer,
) -> None:
    async with Agent() as agent:
        response = await agent.put(
            f"{raw_server.url}/upload",
            headers={"Content-Length": "8"},
            content=_stream(b"abc", b"", b"defgh"),
        )
        assert response.status == 200
        again = await agent.get(raw_server.url)
        assert again.reused_socket is True
    request = raw_server.received[0]
    assert request.header("content-length") == "8"
    assert request.header("transfer-encoding") is None
    assert request.body == b"abcdefgh"
    assert b"\r\n0\r\n" not in request.raw  # no chunk framing
    assert raw_server.stats.opened == 1


@pytest.mark.parametrize(
    ("declared", "parts"),
    [("5", (b"abc", b"defgh")), ("10", (b"abc", b"defgh")), ("1", (b"ab",)), ("4", ())],
)
async def test_streamed_body_that_breaks_its_content_length_closes_the_socket(
    raw_server: RawServer, declared: str, parts: tuple[bytes, ...]
) -> None:
    """Too many bytes, or too few: the server cannot frame what it got; the socket is dropped."""

    async def handler(conn: RawConnection) -> None:
        # The broken upload never completes a request: read_request() sees the agent hang up.
        while await conn.read_request() is not None:
            await conn.send(response_bytes())

    raw_server.handler = handler
    async with Agent() as agent:
        with pytest.raises(RequestBodyError, match="Content-Length") as caught:
            await agent.post(
                raw_server.url, headers={"Content-Length": declared}, content=_stream(*parts)
            )
        assert raw_server.origin in str(caught.value)
        assert_settled(agent)
        assert agent.stats().idle == 0
        # The socket is reset at once. A reset can beat the server's accept(), and the kernel
        # then drops the connection before the server ever sees it: count what it did see.
        assert await wait_until(lambda: raw_server.stats.open == 0)
        assert raw_server.received == []
        after = await agent.get(raw_server.url)
        assert after.status == 200
        assert after.reused_socket is False
        assert agent.stats().connections_created == 2
        assert agent.stats().connections_closed == 1
    assert raw_server.errors == []


# --------------------------------------------------------------------------- Host


async def test_more_than_one_host_header_is_refused(server: UvicornServer) -> None:
    await _refused(
        server,
        "GET",
        "more than one Host header",
        headers=[("Host", "a.example"), ("host", "b.example")],
    )


async def test_one_caller_host_header_replaces_the_urls(raw_server: RawServer) -> None:
    async with Agent() as agent:
        await agent.get(raw_server.url, headers={"Host": "api.example"})
    (request,) = raw_server.received
    assert [v for k, v in request.headers if k.lower() == "host"] == ["api.example"]


# --------------------------------------------------------------------------- protocol switches


@pytest.mark.parametrize(
    "headers",
    [
        {"Upgrade": "websocket", "Connection": "Upgrade"},
        {"upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABk"},
        {"UPGRADE": "anything"},
    ],
)
async def test_upgrade_header_is_refused(server: UvicornServer, headers: dict[str, str]) -> None:
    await _refused(server, "GET", "does not support protocol upgrades", headers=headers)


@pytest.mark.parametrize("method", ["CONNECT", "connect"])
async def test_connect_method_is_refused(server: UvicornServer, method: str) -> None:
    await _refused(server, method, "CONNECT")


async def test_caller_connection_close_is_honoured(server: UvicornServer) -> None:
    async with Agent() as agent:
        first = await agent.get(f"{server.url}/echo", headers={"Connection": "close"})
        assert first.json()["connection"] == "close"
        assert agent.stats().idle == 0
        assert await wait_until(lambda: server.stats.closed == 1)
        second = await agent.get(f"{server.url}/echo")
        assert second.reused_socket is False
        assert second.json()["connection"] is None
        assert server.stats.opened == 2
