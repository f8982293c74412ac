"""The asyncio stream's receive timeout: one timer serves every wait, yet each wait is bounded by
its own timeout, neither cut short by an earlier wait's nor left waiting for it. Over a
connected socket pair, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from starlette_agent._asyncio_stream import AsyncioByteStream, StreamTimeout, wrap_socket

Scenario = Callable[[AsyncioByteStream, socket.socket], Awaitable[None]]


def run(scenario: Scenario, loop: str) -> None:
    async def main() -> None:
        ours, peer = socket.socketpair()
        stream = await wrap_socket(ours, ssl_context=None, server_hostname="", close_timeout=1)
        try:
            await scenario(stream, peer)
        finally:
            await stream.aclose()
            peer.close()

    (uvloop.run if loop == "uvloop" else asyncio.run)(main())


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


@LOOPS
def test_a_short_wait_after_a_long_one_times_out_by_its_own_timeout(loop: str) -> None:
    async def scenario(stream: AsyncioByteStream, peer: socket.socket) -> None:
        stream.receive_timeout = 60
        asyncio.get_running_loop().call_later(0.01, peer.send, b"a")
        assert await stream.receive() == b"a"  # the timer is now armed for a minute from now
        stream.receive_timeout = 0.05
        started = time.monotonic()
        with pytest.raises(StreamTimeout):
            await stream.receive()
        assert time.monotonic() - started < 30  # not the first wait's minute

    run(scenario, loop)


@LOOPS
def test_a_long_wait_after_a_short_one_is_not_cut_short(loop: str) -> None:
    async def scenario(stream: AsyncioByteStream, peer: socket.socket) -> None:
        stream.receive_timeout = 0.05
        asyncio.get_running_loop().call_later(0.01, peer.send, b"a")
        assert await stream.receive() == b"a"  # the timer is armed to fire 50 ms from then
        stream.receive_timeout = 5
        asyncio.get_running_loop().call_later(0.3, peer.send, b"b")
        assert await stream.receive() == b"b"

    run(scenario, loop)


@LOOPS
def test_every_wait_times_out_in_turn(loop: str) -> None:
    async def scenario(stream: AsyncioByteStream, peer: socket.socket) -> None:
        stream.receive_timeout = 0.02
        for _ in range(3):
            with pytest.raises(StreamTimeout):
                await stream.receive()
        peer.send(b"c")
        assert await stream.receive() == b"c"
        stream.receive_timeout = None
        asyncio.get_running_loop().call_later(0.1, peer.send, b"d")
        assert await stream.receive() == b"d"  # no timeout: an old timer expires nothing

    run(scenario, loop)
