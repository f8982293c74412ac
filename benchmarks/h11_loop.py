"""A bare h11 client: what pure-Python HTTP/1.1 parsing costs, with nothing around it.

h11 over a minimal asyncio protocol of our own: one request at a time per connection, its
response parsed as the bytes arrive, kept alive when h11 says the connection can carry another,
and a plain stack of idle connections so that concurrent callers each get one. No limits,
queues, timeouts, expiry or error translation: the least a client built on h11 can do.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import cast
from urllib.parse import urlsplit

import h11

from .session import BadResponse, Session


class H11Protocol(asyncio.Protocol):
    """One connection. Its events are read as bytes arrive, and the request waiting on it is
    woken once, when its response has ended (or failed), as the floor's is."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] | None = None
        self.status = 0
        self.length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._read_events()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        self._read_events()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # h11 raises if it already saw the end of the data (eof_received came first).
        with suppress(RuntimeError):
            self.h11.receive_data(b"")
        self._read_events()

    def _read_events(self) -> None:
        done = self.done
        if done is None or done.done():
            return
        try:
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    return
                if type(event) is h11.Data:
                    self.length += len(event.data)
                elif type(event) is h11.Response:
                    self.status = event.status_code
                elif type(event) is h11.EndOfMessage:
                    done.set_result(None)
                    return
                else:
                    raise BadResponse(f"unexpected {event!r}")
        except Exception as exc:
            done.set_exception(exc)

    async def get(self, target: bytes, host: bytes) -> tuple[int, bool]:
        """Send a GET for ``target``; return the body length and whether the socket is reusable."""
        assert self.transport is not None
        conn = self.h11
        self.status = self.length = 0
        self.done = asyncio.get_running_loop().create_future()
        request = h11.Request(method=b"GET", target=target, headers=[(b"host", host)])
        head, end = conn.send(request), conn.send(h11.EndOfMessage())
        assert head is not None and end is not None
        self.transport.write(head + end)
        await self.done
        if self.status != 200:
            raise BadResponse(f"status {self.status}")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return self.length, True
        return self.length, False


async def open_session(base_url: str, concurrency: int) -> Session:
    loop = asyncio.get_running_loop()
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    host_header = parts.netloc.encode()
    idle: list[H11Protocol] = []
    targets: dict[str, bytes] = {}

    async def get(url: str) -> int:
        target = targets.get(url)
        if target is None:
            target = targets[url] = urlsplit(url).path.encode()
        if idle:
            protocol = idle.pop()
        else:
            _, protocol = await loop.create_connection(H11Protocol, host, port)
        length, reusable = await protocol.get(target, host_header)
        if reusable:
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
