"""The floor: the least CPU an asyncio client can spend on a request and its response.

A hand-written request, written in one call; the response found by its blank line and its
``Content-Length``, nothing else parsed or checked. A plain stack of idle connections lets
concurrent callers each have one. No real client can go below this on the same event loop, so
ratios to it say how much of a client's cost is its own work rather than the loop's and the
kernel's.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

from .session import BadResponse, Session


class RawProtocol(asyncio.Protocol):
    """One connection; the response is taken as its head plus ``Content-Length`` bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""  # the response head, lower-cased, once it has arrived
        self.pending = b""  # bytes before the end of the head
        self.chunks: list[bytes] = []
        self.remaining = 0  # body bytes still to come
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.head:
            self.chunks.append(data)
            self.remaining -= len(data)
        else:
            data = self.pending + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.pending = data
                return
            self.pending = b""
            self.head = head = data[:end].lower()
            start = head.index(b"\r\ncontent-length:") + 17
            stop = head.find(b"\r\n", start)
            self.remaining = int(head[start : stop if stop >= 0 else len(head)])
            if len(data) > end + 4:
                self.chunks.append(data[end + 4 :])
                self.remaining -= len(data) - end - 4
        if self.remaining <= 0 and self.waiter is not None:
            self.waiter.set_result(None)
            self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None:
            self.waiter.set_result(None)
            self.waiter = None

    async def get(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``; return the body length and whether the socket is reusable."""
        assert self.transport is not None
        self.transport.write(request)
        while not self.head or self.remaining > 0:
            if self.lost:
                raise BadResponse("connection closed before the response ended")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        head, body = self.head, b"".join(self.chunks)
        self.head = b""
        self.chunks.clear()
        if head[9:12] != b"200" or self.remaining < 0:
            raise BadResponse(f"status {head[9:12]!r}, or more bytes than its Content-Length")
        return len(body), b"\r\nconnection: close" not in head


async def open_session(base_url: str, concurrency: int) -> Session:
    loop = asyncio.get_running_loop()
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    idle: list[RawProtocol] = []
    requests: dict[str, bytes] = {}

    async def get(url: str) -> int:
        request = requests.get(url)
        if request is None:
            path = urlsplit(url).path
            request = requests[url] = (
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
            )
        if idle:
            protocol = idle.pop()
        else:
            _, protocol = await loop.create_connection(RawProtocol, host, port)
        length, reusable = await protocol.get(request)
        if reusable and not protocol.lost:
            idle.append(protocol)
        else:
            assert protocol.transport is not None
            protocol.transport.close()
        return length

    async def close() -> None:
        while idle:
            transport = idle.pop().transport
            assert transport is not None
            transport.close()

    return Session(get, close)
