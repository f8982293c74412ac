"""Uploads: an early answer is delivered, write_timeout means "no progress", bodies are framed
only by the agent."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
from helpers import assert_settled
from servers import SocketServer, UvicornServer, read_head, wait_until

from starlette_agent import Agent, WriteTimeout

pytestmark = pytest.mark.anyio

REFUSAL = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 7\r\n\r\ntoo big"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def refusing_server() -> Iterator[SocketServer]:
    """Reads a POST's head only, answers 413 at once, and keeps the socket open without
    reading more, for longer than the tests' write_timeout. GETs are answered 200."""
    done = threading.Event()

    def refuse_without_reading(conn: socket.socket) -> None:
        head = read_head(conn)
        if head.startswith(b"GET"):
            conn.sendall(OK)
            while conn.recv(65536):
                pass
            return
        conn.sendall(REFUSAL)
        done.wait(5)

    server = SocketServer(refuse_without_reading, receive_buffer=16 * 1024)
    yield server
    done.set()
    server.close()


async def test_an_early_answer_to_a_large_upload_is_delivered(
    refusing_server: SocketServer,
) -> None:
    async with Agent(write_timeout=1) as agent:
        with anyio.fail_after(10):
            response = await agent.post(refusing_server.url, content=b"x" * 32_000_000)
        assert (response.status, response.content) == (413, b"too big")
        assert_settled(agent)
        # The request was cut short: that socket can carry nothing else.
        assert agent.stats().idle == 0
        next_response = await agent.get(refusing_server.url)
        assert next_response.reused_socket is False
        assert refusing_server.opened == 2


async def test_an_early_answer_to_a_streamed_upload_is_delivered(
    refusing_server: SocketServer,
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b"y" * 65536

    async with Agent(write_timeout=1) as agent:
        with anyio.fail_after(10):
            response = await agent.post(refusing_server.url, content=endless())
        assert (response.status, response.content) == (413, b"too big")
        assert sent < 10_000  # the upload stopped
        assert_settled(agent)
        assert agent.stats().idle == 0
        assert (await agent.get(refusing_server.url)).content == b"ok"


async def test_a_server_that_neither_reads_nor_answers_is_a_write_timeout() -> None:
    # A listener that never accepts: the kernel completes the handshake and buffers a little,
    # then nobody reads.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        async with Agent(write_timeout=0.3) as agent:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(WriteTimeout) as caught:
                await agent.post(url, content=b"x" * 64_000_000)
            # The socket is reset, not politely closed behind a full buffer: no extra wait.
            assert time.monotonic() - started < 2.5
            assert url in str(caught.value)
            assert_settled(agent)
            assert agent.stats().idle == 0


async def test_a_slow_body_is_not_a_write_timeout(server: UvicornServer) -> None:
    async def slow() -> AsyncIterator[bytes]:
        for index in range(4):
            await anyio.sleep(0.2)
            yield f"part{index}".encode()

    async with Agent(write_timeout=0.1) as agent:
        response = await agent.post(f"{server.url}/echo", content=slow())
        assert response.json()["body"] == "part0part1part2part3"


def _read_slowly(received: list[int]) -> Callable[[socket.socket], None]:
    """Read the body 64 KiB every 10 ms, then answer 200."""

    def handler(conn: socket.socket) -> None:
        head = read_head(conn)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        total = 0
        while total < length:
            chunk = conn.recv(min(64 * 1024, length - total))
            if not chunk:
                break
            total += len(chunk)
            time.sleep(0.01)
        received.append(total)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return handler


async def test_a_slow_but_steady_reader_is_not_a_write_timeout() -> None:
    received: list[int] = []
    size = 6_000_000
    server = SocketServer(_read_slowly(received), receive_buffer=32 * 1024)
    try:
        # The peer takes a little every 10 ms; the whole upload takes far longer than
        # write_timeout, which bounds the time without progress.
        async with Agent(write_timeout=0.3) as agent:
            with anyio.fail_after(30):
                response = await agent.post(server.url, content=b"z" * size)
            assert response.status == 200
            assert await wait_until(lambda: received == [size])
    finally:
        server.close()
