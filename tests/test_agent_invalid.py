"""Bad input and malformed responses get clear errors (issue 2, behaviour 11)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_settled
from servers import RawConnection, RawServer, UvicornServer, keep_alive_handler, wait_until

from starlette_agent import (
    Agent,
    AgentError,
    InvalidRequest,
    RemoteProtocolError,
    ResponseTooLarge,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "/relative/path",
        "ftp://127.0.0.1:{port}/",
        "ws://127.0.0.1:{port}/",
        "127.0.0.1:{port}/",
        "http://",
        "http:///path",
        "http://127.0.0.1:{port}/a\r\nX-Injected: 1",
        "http://127.0.0.1:{port}/a\nb",
        "http://127.0.0.1:{port}/a\x00b",
        "http://127.0.0.1:{port}/a b",
        "http://127.0.0.1:notaport/",
        "http://evil.example\\@127.0.0.1:{port}/",
        "http://a@b@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}/a\x01b",
        "http://%31%32%37.0.0.1:{port}/",
    ],
)
async def test_invalid_url_opens_no_connection(server: UvicornServer, url: str) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest):
            await agent.get(url.format(port=server.port))
        assert_settled(agent)
    assert server.stats.opened == 0


@pytest.mark.parametrize("method", ["", "GET\r\n", "GE\nT", "G\x00T", "GET /x", "GET\r\nX: y"])
async def test_invalid_method(server: UvicornServer, method: str) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest):
            await agent.request(method, f"{server.url}/echo")
    assert server.stats.opened == 0


# str.upper() turns the long s into S and the dotless i into I: these must not become POST, GIT.
@pytest.mark.parametrize("method", ["po\u017ft", "\u017fearch", "g\u0131t", "g\u0435t"])
async def test_non_ascii_method_is_refused_before_upper_casing(
    server: UvicornServer, method: str
) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest, match="is not an ASCII token"):
            await agent.request(method, f"{server.url}/echo")
    assert server.stats.opened == 0


async def test_ascii_method_is_upper_cased(server: UvicornServer) -> None:
    async with Agent() as agent:
        assert (await agent.request("post", f"{server.url}/echo")).json()["method"] == "POST"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A\r\nX-B": "v"},
        {"X-A\n": "v"},
        {"X-\x00": "v"},
        {"X-A": "v\r\nX-Injected: 1"},
        {"X-A": "v\n"},
        {"X-A": "v\rw"},
        {"X-A": "v\x00"},
        {"": "v"},
        {"X A": "v"},
        {"X-A:": "v"},
    ],
)
async def test_invalid_header_names_and_values(server: UvicornServer, headers: Any) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest):
            await agent.get(f"{server.url}/echo", headers=headers)
        with pytest.raises(InvalidRequest):
            await agent.get(f"{server.url}/echo", headers=list(headers.items()))
        assert_settled(agent)
    assert server.stats.opened == 0


@pytest.mark.parametrize("value", ["v\x01", "v\x08w", "v\x0bw", "\x1b[31mred", "v\x1f", "v\x7f"])
async def test_control_characters_in_header_values_are_refused(
    server: UvicornServer, value: str
) -> None:
    async with Agent() as agent:
        for headers in ({"X-A": value}, {b"X-A": value.encode()}):
            with pytest.raises(InvalidRequest, match="'X-A' value contains the control character"):
                await agent.get(f"{server.url}/echo", headers=headers)
        assert_settled(agent)
    assert server.stats.opened == 0


async def test_tab_inside_a_header_value_is_sent(server: UvicornServer) -> None:
    async with Agent() as agent:
        echo = (await agent.get(f"{server.url}/echo", headers={"X-A": "a\tb"})).json()
    assert ["x-a", "a\tb"] in echo["headers"]


async def test_invalid_request_is_a_value_error_and_an_agent_error(server: UvicornServer) -> None:
    async with Agent() as agent:
        with pytest.raises(ValueError):
            await agent.get("gopher://127.0.0.1/")
        with pytest.raises(AgentError):
            await agent.get("gopher://127.0.0.1/")
        with pytest.raises(InvalidRequest, match="scheme"):
            await agent.get("gopher://127.0.0.1/")


async def test_invalid_input_does_not_hurt_the_pool(server: UvicornServer) -> None:
    async with Agent(max_sockets=1) as agent:
        for _ in range(20):
            with pytest.raises(InvalidRequest):
                await agent.get(f"{server.url}/echo", headers={"X-A": "bad\r\n"})
        assert (await agent.get(f"{server.url}/echo")).status == 200
        assert server.stats.opened == 1


def _first_connection_sends(data: bytes) -> Any:
    async def handler(conn: RawConnection) -> None:
        if conn.index > 0:
            await keep_alive_handler(conn)
            return
        await conn.read_request()
        await conn.send(data)
        await conn.wait_closed()

    return handler


MALFORMED = {
    "garbage status line": b"HELLO THERE\r\n\r\n",
    "bad status code": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "headers over 64 KiB": (
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"
    ),
    "headers of 1 MiB": (
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_048_576 + b"\r\nContent-Length: 0\r\n\r\n"
    ),
    "bad chunk size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
    "bad header line": b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n",
    "two content lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_response_raises_and_the_socket_is_discarded(
    raw_server: RawServer, name: str
) -> None:
    raw_server.handler = _first_connection_sends(MALFORMED[name])
    async with Agent() as agent:
        with pytest.raises(RemoteProtocolError) as caught:
            await agent.get(raw_server.url)
        assert raw_server.origin in str(caught.value)
        assert_settled(agent)
        assert agent.stats().idle == 0
        assert await wait_until(lambda: raw_server.stats.closed == 1)
        response = await agent.get(raw_server.url)
        assert response.status == 200
        assert response.reused_socket is False
        assert raw_server.stats.opened == 2


async def test_truncated_body_raises(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")

    raw_server.handler = handler
    async with Agent() as agent:
        with pytest.raises(RemoteProtocolError, match=raw_server.origin):
            await agent.get(raw_server.url)
        assert_settled(agent)


async def test_response_too_large(server: UvicornServer) -> None:
    async with Agent(max_response_size=1000) as agent:
        assert len((await agent.get(f"{server.url}/bytes/1000")).content) == 1000
        with pytest.raises(ResponseTooLarge) as caught:
            await agent.get(f"{server.url}/bytes/1001")
        assert server.origin in str(caught.value)
        with pytest.raises(ResponseTooLarge):
            await agent.get(f"{server.url}/stream/200")
        assert_settled(agent)
        assert (await agent.get(f"{server.url}/bytes/10")).status == 200


@pytest.mark.parametrize(
    "options",
    [
        {"max_sockets": 0},
        {"max_total_sockets": -1},
        {"max_free_sockets": -1},
        {"idle_timeout": -1},
        {"connect_timeout": float("nan")},
        {"keep_alive": "yes"},
        {"max_requests_per_socket": 0},
    ],
)
def test_invalid_options_are_rejected_naming_the_option(options: dict[str, Any]) -> None:
    (name,) = options
    with pytest.raises((ValueError, TypeError), match=name):
        Agent(**options)
