"""A lean anyio ``ByteStream`` over an asyncio transport, for the asyncio hot path.

anyio's own asyncio socket stream pauses and resumes reading around every ``receive`` (two
``epoll_ctl`` calls) and yields to the loop on every call. For a client that sends small requests
over kept-alive sockets, that is a large share of the CPU per request. This stream keeps the
transport reading, buffers up to a high-water mark, and wakes the reader with one future.

It is a real ``anyio.abc.ByteStream``, so the rest of the agent, anyio's cancel scopes included,
treat it like any other stream. TLS is asyncio's own (the handshake happens in
``loop.create_connection``). On trio, and for user connectors, anyio's streams are used.

A side benefit: since the transport keeps reading while the socket is idle, a server's close (or
any bytes it sends unasked) is seen without a poll, so ``has_unexpected_input`` costs nothing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute

# Read flow control: stop reading from the socket past this much unread data.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.exception: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None
        self.closed_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake_reader()
        return None  # let the transport close the socket: we never write after the peer's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.exception = exc
        self._wake_reader()
        self._wake_writer()
        if self.closed_waiter is not None and not self.closed_waiter.done():
            self.closed_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class StreamTimeout(TimeoutError):
    """A send or receive waited longer than the stream's ``send_timeout``/``receive_timeout``."""


class AsyncioByteStream(ByteStream):
    """A byte stream over an asyncio transport made by ``connect``.

    ``send_timeout`` and ``receive_timeout`` bound each wait of ``send``/``receive``; on expiry
    they raise ``StreamTimeout``. A loop timer costs a quarter of an anyio cancel scope, and most
    calls find the data already there and need no timer at all.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self.send_timeout: float | None = None
        self.receive_timeout: float | None = None

    def has_pending_input(self) -> bool:
        """Whether bytes, EOF or an error arrived that nobody has read."""
        protocol = self._protocol
        return bool(protocol.buffer) or protocol.eof or protocol.lost

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if not protocol.buffer:
            self._check_readable()
            waiter = protocol.read_waiter = self._loop.create_future()
            try:
                await self._wait(waiter, self.receive_timeout)
            finally:
                protocol.read_waiter = None
            if not protocol.buffer:
                self._check_readable()
        chunk = protocol.buffer.popleft()
        if len(chunk) > max_bytes:
            protocol.buffer.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        protocol.buffered -= len(chunk)
        if protocol.reading_paused and protocol.buffered <= LOW_WATER:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.exception
        self._transport.write(item)
        if protocol.writing_paused:
            waiter = protocol.write_waiter = self._loop.create_future()
            try:
                await self._wait(waiter, self.send_timeout)
            finally:
                protocol.write_waiter = None
            if protocol.lost:
                raise anyio.BrokenResourceError from protocol.exception

    async def send_eof(self) -> None:
        self._transport.write_eof()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        protocol = self._protocol
        # close() flushes what is buffered, then sends FIN (or TLS close_notify, bounded by the
        # ssl_shutdown_timeout given at connect).
        self._transport.close()
        protocol._wake_reader()
        protocol._wake_writer()
        if not protocol.lost:
            # Return only once the socket is shut, as Node frees an agent's slot on 'close':
            # a socket replacing this one must not overlap it. The caller bounds this wait.
            protocol.closed_waiter = self._loop.create_future()
            await protocol.closed_waiter

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        attributes: dict[Any, Callable[[], Any]] = {
            SocketAttribute.raw_socket: lambda: transport.get_extra_info("socket"),
            SocketAttribute.local_address: lambda: transport.get_extra_info("sockname"),
            SocketAttribute.remote_address: lambda: transport.get_extra_info("peername"),
            SocketAttribute.local_port: lambda: transport.get_extra_info("sockname")[1],
            SocketAttribute.remote_port: lambda: transport.get_extra_info("peername")[1],
        }
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            attributes[TLSAttribute.ssl_object] = lambda: ssl_object
            attributes[TLSAttribute.server_side] = lambda: False
        return attributes

    async def _wait(self, waiter: asyncio.Future[None], timeout: float | None) -> None:
        if timeout is None:
            await waiter
            return
        timer = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    def _check_readable(self) -> None:
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.exception is not None:
            raise anyio.BrokenResourceError from protocol.exception
        if protocol.eof or protocol.lost:
            raise anyio.EndOfStream


def _has_happy_eyeballs(loop: asyncio.AbstractEventLoop) -> bool:
    # The standard loop takes happy_eyeballs_delay; uvloop's create_connection does not.
    return isinstance(loop, asyncio.BaseEventLoop)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(StreamTimeout())


async def connect(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    local_address: str | None,
    close_timeout: float,
) -> AsyncioByteStream:
    """Open a TCP (and, with ``ssl_context``, TLS) connection on the running asyncio loop."""
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {}
    if ssl_context is not None:
        options = {
            "ssl": ssl_context,
            "server_hostname": host,
            "ssl_shutdown_timeout": close_timeout,
        }
    if _has_happy_eyeballs(loop):
        options["happy_eyeballs_delay"] = 0.25  # RFC 8305's recommended delay, as anyio uses
    transport, protocol = await loop.create_connection(
        _Protocol,
        host,
        port,
        local_addr=(local_address, 0) if local_address is not None else None,
        **options,
    )
    return AsyncioByteStream(transport, protocol)
