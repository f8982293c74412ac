"""Decompression: gzip, deflate, br and zstd bodies decoded as they are read, a decompression bomb
stopped at ``max_response_size``, corrupt data refused, against a real uvicorn."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from helpers import assert_settled
from servers import (
    RawConnection,
    RawServer,
    UvicornServer,
    bomb,
    encode,
    encoded_body,
    response_bytes,
    wait_until,
)

from starlette_agent import Agent, DecodingError, ResponseTooLarge

pytestmark = pytest.mark.anyio

CODINGS = ["gzip", "deflate", "raw-deflate", "br", "zstd"]
EXPECTED = encoded_body(100)


def _sent_headers(response_json: dict[str, object]) -> dict[str, str]:
    return dict(response_json["headers"])  # type: ignore[arg-type]


async def test_the_agent_asks_for_every_coding_it_can_decode(server: UvicornServer) -> None:
    async with Agent() as agent:
        sent = _sent_headers((await agent.get(f"{server.url}/echo")).json())
    assert sent["accept-encoding"] == "gzip, deflate, br, zstd"


@pytest.mark.parametrize("coding", CODINGS)
async def test_each_coding_is_decoded(server: UvicornServer, coding: str) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/encoded/{coding}")
        assert response.content == EXPECTED
        assert response.text == EXPECTED.decode()
        # The headers stay as received: the body was sent encoded.
        assert response.headers["content-encoding"] == coding.replace("raw-", "")
        assert int(response.headers["content-length"]) < len(EXPECTED)
        assert_settled(agent)
        assert agent.stats().idle == 1  # fully read: the socket went back to the pool


@pytest.mark.parametrize("codings", ["gzip,br", "deflate,zstd,gzip", "br,identity,gzip"])
async def test_stacked_codings_are_undone_from_the_last_applied(
    server: UvicornServer, codings: str
) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/encoded/{codings}")
    assert response.headers["content-encoding"] == codings.replace(",", ", ")
    assert response.content == EXPECTED


async def test_codings_in_several_content_encoding_headers_are_all_undone(
    raw_server: RawServer,
) -> None:
    """``Content-Encoding: gzip`` then ``Content-Encoding: br`` on two lines is one list, as
    if joined by commas (RFC 9110 5.3)."""
    body = encode(EXPECTED, ["gzip", "br"])
    headers = [("Content-Encoding", "gzip"), ("Content-Encoding", "br")]

    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(response_bytes(body, headers=headers))

    raw_server.handler = handler
    async with Agent() as agent:
        response = await agent.get(raw_server.url)
        async with agent.stream("GET", raw_server.url) as streamed:
            pieces = [piece async for piece in streamed.aiter_bytes()]
    assert response.headers.getlist("content-encoding") == ["gzip", "br"]
    assert response.content == b"".join(pieces) == EXPECTED
    assert raw_server.stats.opened == 1


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_streamed_body_is_decoded_piece_by_piece_and_raw_gives_it_as_sent(
    server: UvicornServer, coding: str
) -> None:
    url = f"{server.url}/encoded/{coding}?lines=2000&chunk=100"
    async with Agent() as agent:
        async with agent.stream("GET", url) as response:
            pieces = [piece async for piece in response.aiter_bytes()]
        assert b"".join(pieces) == encoded_body(2000)
        assert len(pieces) > 1
        async with agent.stream("GET", url) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        assert raw == encode(encoded_body(2000), [coding])
        assert server.stats.opened == 1  # both bodies were read to the end: one socket


async def test_text_and_lines_are_decoded_across_pieces(server: UvicornServer) -> None:
    url = f"{server.url}/encoded/gzip?lines=500&chunk=7"
    async with Agent() as agent:
        async with agent.stream("GET", url) as response:
            lines = [line async for line in response.aiter_lines()]
        assert lines == encoded_body(500).decode().splitlines()
        async with agent.stream("GET", url) as response:
            text = "".join([piece async for piece in response.aiter_text()])
        assert text == encoded_body(500).decode()


async def test_json_of_a_gzip_body(server: UvicornServer) -> None:
    """The case that failed first: ``.json()`` of a gzip response raised UnicodeDecodeError."""
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/encoded/gzip?json=1")
    assert response.json() == {"greeting": "caf\u00e9", "n": 1}


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_a_decompression_bomb_stops_at_max_response_size_without_expanding(
    server: UvicornServer, coding: str
) -> None:
    limit = 10 * 1024 * 1024
    url = f"{server.url}/bomb/{coding}?mb=101"  # expands to 101 MiB
    compressed = bomb(coding, 101)  # made now, so that the server's work is not measured
    assert len(compressed) < 200 * 1024
    async with Agent(max_response_size=limit) as agent:
        gc.collect()
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge, match=f"max_response_size={limit}"):
                await agent.get(url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Never near the 101 MiB the body expands to, nor even the 16 MiB one 16 KiB piece of
        # the gzip body expands to: the limit, and a few decoded pieces on the way.
        assert peak < limit + 2 * 1024 * 1024, peak
        assert_settled(agent)
        assert agent.stats().idle == 0  # the rest of the body was not drained: socket closed
    assert await wait_until(lambda: server.stats.closed == 1)


async def test_the_limit_counts_the_body_as_received_too(server: UvicornServer) -> None:
    async with Agent(max_response_size=100) as agent:
        with pytest.raises(ResponseTooLarge):
            await agent.get(f"{server.url}/bytes/1000")


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
@pytest.mark.parametrize("cut", [False, True])
async def test_corrupt_or_cut_short_data_raises_decoding_error(
    server: UvicornServer, coding: str, cut: bool
) -> None:
    url = f"{server.url}/corrupt/{coding}" + ("?cut=1" if cut else "")
    async with Agent() as agent:
        with pytest.raises(DecodingError, match=f"the {coding} body") as caught:
            await agent.get(url)
        assert server.url in str(caught.value)
        assert isinstance(caught.value.__cause__, DecodingError)
        assert_settled(agent)
        if not cut:  # refused mid-body: the rest was never read, so the socket is closed
            assert agent.stats().idle == 0
            assert await wait_until(lambda: server.stats.closed == 1)
        # The agent goes on working.
        assert (await agent.get(f"{server.url}/encoded/{coding}")).content == EXPECTED


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
async def test_a_response_without_a_body_decodes_to_nothing(
    server: UvicornServer, coding: str
) -> None:
    """HEAD, 204 and 304 carry the Content-Encoding their body would have had, and no body."""
    async with Agent() as agent:
        head = await agent.head(f"{server.url}/encoded/{coding}")
        assert head.headers["content-encoding"] == coding
        assert int(head.headers["content-length"]) > 0
        for status in (204, 304):
            response = await agent.get(f"{server.url}/status/{status}?encoding={coding}")
            assert (response.status, response.content, response.text) == (status, b"", "")
            assert response.headers["content-encoding"] == coding
        assert (head.content, head.text) == (b"", "")
        assert agent.stats().idle == 1  # each body ended at once: the socket was reused
    assert (server.stats.opened, server.stats.requests) == (1, 3)


async def test_decompress_off_gives_the_body_as_sent_and_asks_for_no_coding(
    server: UvicornServer,
) -> None:
    async with Agent(decompress=False) as agent:
        sent = _sent_headers((await agent.get(f"{server.url}/echo")).json())
        assert "accept-encoding" not in sent
        response = await agent.get(f"{server.url}/encoded/gzip")
    assert response.content == encode(EXPECTED, ["gzip"])


async def test_a_callers_accept_encoding_is_sent_as_is(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/echo", headers={"Accept-Encoding": "identity"})
    assert _sent_headers(response.json())["accept-encoding"] == "identity"


async def test_an_unknown_coding_leaves_the_body_as_sent(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/corrupt/compress")
    assert response.content == b"this is no compress data" + b" data" * 99
