"""The ``Response`` conveniences httpx users know, and URL credentials kept out of what a
response and its errors show, against a real uvicorn."""

from __future__ import annotations

from datetime import timedelta

import pytest
from servers import UvicornServer

from starlette_agent import (
    Agent,
    AgentError,
    HTTPStatusError,
    InvalidOption,
    InvalidRequest,
    Response,
    ResponseTooLarge,
    StreamClosed,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("status", "success", "redirect", "client_error", "server_error"),
    [
        (200, True, False, False, False),
        (204, True, False, False, False),
        (302, False, True, False, False),
        (304, False, False, False, False),
        (404, False, False, True, False),
        (503, False, False, False, True),
    ],
)
async def test_status_properties_and_raise_for_status(
    server: UvicornServer,
    status: int,
    success: bool,
    redirect: bool,
    client_error: bool,
    server_error: bool,
) -> None:
    url = f"{server.url}/status/{status}" if status != 302 else f"{server.url}/redirect/302"
    async with Agent() as agent:
        response = await agent.get(url)
    assert response.status == response.status_code == status
    assert (response.is_success, response.is_redirect) == (success, redirect)
    assert (response.is_client_error, response.is_server_error) == (client_error, server_error)
    assert response.is_error == (client_error or server_error)
    if not response.is_error:
        assert response.raise_for_status() is response
        return
    with pytest.raises(HTTPStatusError) as caught:
        response.raise_for_status()
    error = caught.value
    assert isinstance(error, AgentError)
    assert error.response is response and error.request is response.request
    assert error.origin == server.url
    kind = "client error" if client_error else "server error"
    assert str(error) == f"{kind} '{status} {response.reason}' for GET {url}"
    assert response.text == f"status {status}"  # the body was read before the error


async def test_the_request_as_sent_and_the_time_it_took(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.post(f"{server.url}/slow?delay=0.2", json={"a": 1})
    sent = response.request
    assert (sent.method, sent.url) == ("POST", f"{server.url}/slow?delay=0.2")
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("starlette-agent/")
    assert isinstance(response.elapsed, timedelta)
    assert timedelta(seconds=0.15) < response.elapsed < timedelta(seconds=30)


async def test_encoding_comes_from_the_charset_and_can_be_set(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/encoded/identity?lines=2")
    assert response.encoding == response.charset == "utf-8"
    assert response.text.startswith("line 0: café")
    response.encoding = "latin-1"
    assert response.text.startswith("line 0: cafÃ©")
    with pytest.raises(InvalidOption, match="encoding must be a text encoding"):
        response.encoding = "no-such-codec"
    odd = Response(200, headers={"content-type": "text/plain; charset=klingon"}, content=b"ok")
    assert (odd.charset, odd.encoding, odd.text) == ("klingon", "utf-8", "ok")


async def test_text_and_lines_as_they_stream(server: UvicornServer) -> None:
    async with Agent() as agent, agent.stream("GET", f"{server.url}/stream/4") as response:
        lines = [line async for line in response.aiter_lines()]
    assert lines == ["chunk-0", "chunk-1", "chunk-2", "chunk-3"]
    async with Agent() as agent, agent.stream("GET", f"{server.url}/stream/2") as response:
        texts = [text async for text in response.aiter_text()]
    assert "".join(texts) == "chunk-0\nchunk-1\n"


async def test_lines_split_on_every_ending_even_across_pieces() -> None:
    class Pieces:
        def __init__(self, pieces: list[bytes]) -> None:
            self._pieces = pieces

        async def receive_chunk(self) -> bytes | None:
            return self._pieces.pop(0) if self._pieces else None

        async def aclose(self) -> None:
            pass

    body = Pieces([b"a\r", b"\nb\n", b"\nc\rd", b"\xc3", b"\xa9\r\n", b"tail"])
    lines = [line async for line in Response(200, body=body).aiter_lines()]
    assert lines == ["a", "b", "", "c", "d\u00e9", "tail"]


async def test_url_credentials_never_show(server: UvicornServer) -> None:
    secret = "s3cr3t-pw"
    url = server.url.replace("http://", f"http://ada:{secret}@")
    async with Agent(max_response_size=50) as agent:
        response = await agent.get(f"{url}/status/201")
        assert response.url == f"http://ada:[secure]@127.0.0.1:{server.port}/status/201"
        assert secret not in repr(response.request)
        with pytest.raises(ResponseTooLarge) as too_large:
            await agent.get(f"{url}/bytes/100")
        with pytest.raises(InvalidRequest) as invalid:
            await agent.get(f"{url}/a b")
        async with agent.stream("GET", f"{url}/bytes/3") as streamed:
            assert [piece async for piece in streamed.aiter_bytes()] == [b"xxx"]
            with pytest.raises(StreamClosed) as closed:
                await streamed.aread()
    for error in (too_large.value, invalid.value, closed.value):
        assert secret not in str(error) and "ada:[secure]@" in str(error), error
