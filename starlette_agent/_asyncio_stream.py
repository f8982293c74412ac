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
import contextlib
import fcntl
import math
import socket
import ssl
import struct
import termios
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute

_NO_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
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
    """A byte stream over an asyncio transport made by ``wrap_socket``.

    ``receive_timeout`` bounds each wait of ``receive``; ``send_timeout`` bounds the time a
    ``send`` waits without the transport taking any of its data. On expiry they raise
    ``StreamTimeout``. A loop timer costs a quarter of an anyio cancel scope, and most calls find
    the data already there (or the buffer below its high-water mark) and need no timer at all.
    """

    def __init__(
        self, transport: asyncio.Transport, protocol: _Protocol, *, close_timeout: float
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False
        self._close_timeout = close_timeout
        self._loop = asyncio.get_running_loop()
        self._write_timer: asyncio.TimerHandle | None = None
        self._written = 0  # bytes handed to the transport
        self._sock = transport.get_extra_info("socket")
        self._fd: int = self._sock.fileno() if self._sock is not None else -1
        self.send_timeout: float | None = None
        self.receive_timeout: float | None = None
        # One timer bounds the receive waits, moved only when a wait ends sooner than it fires
        # (see _wait_readable): no timer is made and cancelled per receive.
        self._receive_deadline: float | None = None  # when the current wait expires
        self._receive_timer: asyncio.TimerHandle | None = None
        self._receive_timer_at = math.inf

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
                await self._wait_readable(waiter, self.receive_timeout)
            finally:
                protocol.read_waiter = None
                self._receive_deadline = None
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
        self._written += len(item)
        if protocol.writing_paused:
            await self._drain()
            if protocol.lost:
                raise anyio.BrokenResourceError from protocol.exception

    async def send_eof(self) -> None:
        self._transport.write_eof()

    async def aclose(self) -> None:
        """Close cleanly: flush, then FIN (or TLS close_notify), within ``close_timeout``.

        Returns once the socket is shut, as Node frees an agent's slot on 'close': a socket
        replacing this one must not overlap it. A peer that does not take our last bytes within
        ``close_timeout`` gets a reset instead, so no socket lingers on a stuck peer.
        """
        if self._closed:
            return
        self._closed = True
        self._cancel_receive_timer()
        protocol = self._protocol
        self._transport.close()
        protocol._wake_reader()
        protocol._wake_writer()
        if protocol.lost:
            return
        closed = protocol.closed_waiter = self._loop.create_future()
        timer = self._loop.call_later(self._close_timeout, self._reset_transport)
        try:
            await closed
        except BaseException:
            self._reset_transport()
            raise
        finally:
            timer.cancel()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, *, server_hostname: str
    ) -> AsyncioByteStream:
        """TLS over this stream's connection (a proxy tunnel): the new stream replaces this one.

        Nothing may be buffered unread: the first bytes after this are the server's handshake.
        """
        protocol = self._protocol
        if protocol.buffer or protocol.eof or protocol.lost:
            raise anyio.BrokenResourceError("bytes arrived before the TLS handshake")
        self._closed = True  # the new stream owns the connection from here
        self._cancel_receive_timer()
        transport = await self._loop.start_tls(
            self._transport,
            protocol,
            ssl_context,
            server_hostname=server_hostname,
            ssl_shutdown_timeout=self._close_timeout,
        )
        if transport is None:  # the connection closed during the handshake
            raise anyio.BrokenResourceError("the connection closed during the TLS handshake")
        protocol.transport = transport
        return AsyncioByteStream(transport, protocol, close_timeout=self._close_timeout)

    def abort(self) -> None:
        """Reset the connection now (RST): for a socket that is broken or left mid-exchange.

        Synchronous, so it also runs where no await is possible (an event loop shutting down).
        The loop closes the socket on its next turn; ``reset()`` waits for that.
        """
        self._closed = True
        self._cancel_receive_timer()
        self._reset_transport()
        self._protocol._wake_reader()
        self._protocol._wake_writer()

    async def reset(self) -> None:
        """``abort()``, then wait until the socket is closed, so that a socket replacing this
        one never overlaps it (the caller bounds the wait)."""
        self.abort()
        protocol = self._protocol
        if not protocol.lost:
            if protocol.closed_waiter is None or protocol.closed_waiter.done():
                protocol.closed_waiter = self._loop.create_future()
            await protocol.closed_waiter

    def _reset_transport(self) -> None:
        # transport.abort() alone closes the descriptor; with unsent data queued the kernel
        # then keeps trying to deliver it (FIN-WAIT-1, for minutes), and the peer never learns
        # we left. A zero linger time makes the close a reset.
        if self._sock is not None and not self._protocol.lost:
            # uvloop's socket object raises ValueError once its handle is closed.
            with contextlib.suppress(OSError, ValueError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
        self._transport.abort()

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

    async def _wait_readable(self, waiter: asyncio.Future[None], timeout: float | None) -> None:
        """Wait for ``waiter``, at most ``timeout`` seconds.

        Most waits end long before their timeout, so the timer is not made per wait: it stays
        armed after one, and when it fires it expires the wait in progress only if that wait's
        own deadline has passed, else moves to that deadline (or lapses, with no wait).
        """
        if timeout is None:
            await waiter
            return
        deadline = self._loop.time() + timeout
        self._receive_deadline = deadline
        if deadline < self._receive_timer_at:  # none armed, or armed for later than this
            self._arm_receive_timer(deadline)
        await waiter

    def _arm_receive_timer(self, deadline: float) -> None:
        if self._receive_timer is not None:
            self._receive_timer.cancel()
        self._receive_timer = self._loop.call_at(deadline, self._receive_timer_fired)
        self._receive_timer_at = deadline

    def _receive_timer_fired(self) -> None:
        self._receive_timer = None
        self._receive_timer_at = math.inf
        deadline = self._receive_deadline
        waiter = self._protocol.read_waiter
        if deadline is None or waiter is None:
            return  # no receive is waiting: the timer lapses
        if self._loop.time() >= deadline:
            _expire(waiter)
        else:
            self._arm_receive_timer(deadline)

    def _cancel_receive_timer(self) -> None:
        if self._receive_timer is not None:
            self._receive_timer.cancel()
            self._receive_timer = None
            self._receive_timer_at = math.inf

    async def _drain(self) -> None:
        """Wait until the transport takes more data. ``send_timeout`` bounds the time without
        progress, not the whole drain: a large body draining slowly but steadily is no timeout."""
        waiter = self._protocol.write_waiter = self._loop.create_future()
        timeout = self.send_timeout
        if timeout is not None:
            delivered = self.bytes_delivered()
            self._write_timer = self._loop.call_later(
                timeout, self._check_progress, waiter, delivered
            )
        try:
            await waiter
        finally:
            self._protocol.write_waiter = None
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

    def _check_progress(self, waiter: asyncio.Future[None], delivered_before: int) -> None:
        delivered = self.bytes_delivered()
        timeout = self.send_timeout
        if delivered > delivered_before and timeout is not None and not waiter.done():
            self._write_timer = self._loop.call_later(
                timeout, self._check_progress, waiter, delivered
            )
        else:
            self._write_timer = None
            _expire(waiter)

    def bytes_delivered(self) -> int:
        """Bytes sent that the peer has acknowledged: the measure of write progress.

        The transport's own buffer is a poor one: the kernel takes data from it in large
        batches, so it can stand still for a while even as the peer reads steadily.
        """
        buffered = self._transport.get_write_buffer_size() + unsent_bytes(self._fd)
        return self._written - buffered

    def _check_readable(self) -> None:
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.exception is not None:
            raise anyio.BrokenResourceError from protocol.exception
        if protocol.eof or protocol.lost:
            raise anyio.EndOfStream


def unsent_bytes(fd: int) -> int:
    """Bytes the kernel still holds for socket ``fd`` (sent but not acknowledged, or not sent
    yet): Linux's SIOCOUTQ. 0 where the platform cannot tell."""
    if fd < 0:
        return 0
    try:
        answer = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError):
        return 0
    return int(struct.unpack("i", answer)[0])


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(StreamTimeout())


async def wrap_socket(
    sock: socket.socket,
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str,
    close_timeout: float,
) -> AsyncioByteStream:
    """Hand a connected socket to the running loop (TLS handshake included, with a context).

    From this call on the loop owns ``sock``: it closes it on every failure, cancellation
    included, so the caller must not close it again.
    """
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {}
    if ssl_context is not None:
        options = {
            "ssl": ssl_context,
            "server_hostname": server_hostname,
            "ssl_shutdown_timeout": close_timeout,
        }
    transport, protocol = await loop.create_connection(_Protocol, sock=sock, **options)
    return AsyncioByteStream(transport, protocol, close_timeout=close_timeout)
