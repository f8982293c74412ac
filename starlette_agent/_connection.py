"""One socket to one origin, and the h11 state machine that speaks HTTP/1.1 over it.

A ``Connection`` sends one request at a time and reads its response. It never decides whether it
is pooled: it reports whether the exchange left it reusable, and the Agent and its ``Pool`` do
the rest. Low-level errors are translated here, at the boundary, into ``AgentError``s that name
the origin.

How a connection ends: a socket that finished its exchange cleanly (or never started one) is
closed politely, flushing and sending FIN, within ``CLOSE_TIMEOUT``. Any other socket (broken,
timed out, cancelled mid-exchange, or with a request half-written) is reset at once: its peer
may never read what is buffered, and a polite close would linger on it.
"""

from __future__ import annotations

import math
import select
import socket
import struct
from collections.abc import AsyncIterable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
import h11
from anyio.abc import ByteStream, SocketAttribute

from ._asyncio_stream import AsyncioByteStream, unsent_bytes
from ._errors import (
    AgentError,
    ReadTimeout,
    RemoteProtocolError,
    RequestBodyError,
    WriteTimeout,
)
from ._eventloop import current_clock
from ._proxy import Proxy
from ._urls import Origin
from ._wire import END, NEED_DATA, BodyLengthError, H11Wire, Head, Wire, WireError, WireEvent

RECEIVE_SIZE = 65536
# Response heads larger than this are refused (h11 raises when an event outgrows its buffer).
MAX_RESPONSE_HEAD_SIZE = 64 * 1024
# More interim (1xx) responses than this before the final one is a server stalling us.
MAX_INFORMATIONAL_RESPONSES = 16
# A polite close must not hang a shutdown on a peer that never reads our TLS close_notify.
CLOSE_TIMEOUT = 1.0
# Bodies larger than this (and every streamed body) are sent while watching for an early answer:
# smaller ones fit in the socket's buffers, so writing them can never block on a silent server.
WATCHED_UPLOAD_SIZE = 64 * 1024
# Writes to anyio streams are split so that write_timeout bounds time without progress.
WRITE_PIECE_SIZE = 64 * 1024

_READ_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of a request; None means no limit.

    ``headers`` bounds the time from the end of the request to the end of the final response
    head (interim 1xx responses included), however the server trickles it.
    """

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None
    headers: float | None

    @classmethod
    def all(cls, seconds: float) -> Timeouts:
        """The same limit for every phase (what ``timeout=seconds`` on a request means)."""
        return cls(seconds, seconds, seconds, seconds, seconds)


class ConnectionLostBeforeResponse(RemoteProtocolError):
    """The socket failed before a single response byte arrived: the request may be retried."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: str
    http_version: str
    headers: list[tuple[bytes, bytes]]


class Connection:
    """An HTTP/1.1 client connection: a byte stream plus its h11 state."""

    def __init__(
        self,
        pool_key: str,
        origin: Origin,
        stream: ByteStream,
        *,
        forward_proxy: Proxy | None = None,
        wire: Wire | None = None,
    ) -> None:
        self.pool_key = pool_key
        self.origin = origin
        self.stream = stream
        self.idle_deadline = math.inf
        self.requests_started = 0
        self.closed = False
        self.response_started = False  # any byte of the current response arrived
        self._response_bytes = 0  # bytes received for the current response so far
        self._eof = False
        self._in_exchange = False  # between send_request and a clean finish_cycle
        self._request_sent = False  # every byte of the current request was written
        self._early: list[Any] = []  # events read while the request was still being sent
        #: An http target reached through this proxy: heads go in absolute form, with its
        #: credentials (the proxy strips Proxy-Authorization before it forwards a request).
        self._forward_proxy = forward_proxy
        self._forward_heads: dict[int, tuple[h11.Request, h11.Request]] = {}
        self._sent = 0  # bytes sent on an anyio stream (ours counts its own)
        self._sending = False  # a send is waiting for the peer to take data
        self._sends = 0  # sends started on an anyio stream
        self._watchdog = False  # a watchdog task times the sends, not each send itself
        self._wire: Wire = wire if wire is not None else H11Wire(MAX_RESPONSE_HEAD_SIZE)
        #: Our asyncio stream applies timeouts itself, with a timer instead of a cancel scope.
        self._fast_stream = stream if type(stream) is AsyncioByteStream else None
        self._poller = None if self._fast_stream is not None else _poller_for(stream)
        # The event loop's clock, as anyio's deadlines use it; looked up once, not per request.
        self.clock: Callable[[], float] = current_clock()
        raw = stream_extra(stream, SocketAttribute.raw_socket)
        self._fd: int = raw.fileno() if raw is not None else -1
        sockname = stream_extra(stream, SocketAttribute.local_address)
        self.local_port: int | None = sockname[1] if isinstance(sockname, tuple) else None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "busy" if self._in_exchange else "idle"
        return f"<Connection {self.origin} local_port={self.local_port} {state}>"

    # -- reuse ---------------------------------------------------------------------------------

    def has_unexpected_input(self) -> bool:
        """True when an idle socket is readable: the server closed it or sent something unasked.

        Either way it cannot carry a new request, so it is closed rather than reused. Checked
        with one zero-timeout poll of this socket only, never a scan of the pool.
        """
        if self._fast_stream is not None:
            return self._fast_stream.has_pending_input()
        if self._poller is not None and self._poller.poll(0):
            return True
        return _has_buffered_input(self.stream)

    # -- one exchange --------------------------------------------------------------------------

    async def send_request(
        self, head: h11.Request, body: bytes | AsyncIterable[bytes] | None, timeouts: Timeouts
    ) -> ResponseHead:
        """Send the request and read until the response head; the body is read separately.

        A server may answer before it has read the whole body (a 413 or 401 to an upload) and
        stop reading: large and streamed bodies are therefore sent while watching for that
        answer, and once a final response arrives the rest of the body is not sent.
        """
        if self._forward_proxy is not None:
            head = self._absolute_form(head, self._forward_proxy)
        self.requests_started += 1
        self.response_started = False
        self._in_exchange = True
        self._request_sent = False
        self._early.clear()
        self._response_bytes = self._wire.buffered
        write_error: AgentError | None = None
        try:
            if body is None or (isinstance(body, bytes) and len(body) <= WATCHED_UPLOAD_SIZE):
                await self._write_request(head, body, timeouts.write)
            else:
                await self._write_watching_for_answer(head, body, timeouts.write)
        except TimeoutError:
            raise WriteTimeout(
                f"{self.origin}: could not send the request: no progress for "
                f"{timeouts.write}s (the server is not reading)",
                origin=str(self.origin),
            ) from None
        except BodyLengthError as exc:
            # A streamed body longer or shorter than the Content-Length the caller declared.
            raise RequestBodyError(
                f"{self.origin}: the request body does not match its declared length: {exc}",
                origin=str(self.origin),
            ) from exc
        except (*_READ_ERRORS, anyio.EndOfStream) as exc:
            # The server may have answered early (413, 401) and closed: read that answer.
            write_error = ConnectionLostBeforeResponse(
                f"{self.origin}: connection lost while sending the request ({exc!r})",
                origin=str(self.origin),
            )
            write_error.__cause__ = exc
        try:
            event = await self._read_final_head(timeouts)
        except ConnectionLostBeforeResponse:
            if write_error is not None:
                raise write_error from write_error.__cause__
            raise
        return self._response_head(event)

    async def receive_body_chunk(self, read_timeout: float | None) -> bytes | None:
        """The next piece of the response body, or None at its end."""
        event = await self._next_event(read_timeout)
        if type(event) is bytes:
            return event
        if event is END:
            return None
        raise self._protocol_error(f"expected response body, got {event!r}")

    def finish_cycle(self) -> bool:
        """After the response ended: True if the socket can carry another request."""
        if not self._request_sent:
            # Cut short: the server answered before the request was all sent (aclose resets).
            return False
        self._in_exchange = False
        # A close-delimited body ends at EOF, and so does that socket.
        if self._eof:
            return False
        return self._wire.finish()

    async def aclose(self) -> None:
        """Close the socket: politely if its last exchange ended cleanly, else with a reset.

        Shielded: a cancelled caller must not leave it open.
        """
        if self.closed:
            return
        self.closed = True
        self._poller = None
        settled = not self._in_exchange and self._wire.settled
        # The socket is being thrown away; a failing close only means it was already broken,
        # and raising here would hide the error that made us close it.
        with anyio.CancelScope(shield=True), suppress(Exception):
            if self._fast_stream is not None:
                if settled:
                    await self._fast_stream.aclose()  # bounded by its close_timeout
                else:
                    with anyio.move_on_after(CLOSE_TIMEOUT):
                        await self._fast_stream.reset()
            elif settled:
                with anyio.move_on_after(CLOSE_TIMEOUT) as polite:
                    await self.stream.aclose()
                if polite.cancelled_caught:
                    await self._reset()
            else:
                await self._reset()

    def abort_now(self) -> bool:
        """Reset the socket without awaiting, if its stream allows; True if it is closed now."""
        if self.closed:
            return True
        if self._fast_stream is None:
            return False
        self.closed = True
        self._poller = None
        self._fast_stream.abort()
        return True

    # -- writing -------------------------------------------------------------------------------

    def _absolute_form(self, head: h11.Request, proxy: Proxy) -> h11.Request:
        """``head`` as a proxy wants it: ``GET http://host:port/path``, with its credentials."""
        cached = self._forward_heads.get(id(head))
        if cached is not None and cached[0] is head:
            return cached[1]
        headers = list(head.headers)
        if proxy.authorization is not None:
            headers.append((b"proxy-authorization", proxy.authorization))
        target = str(self.origin).encode("ascii") + head.target
        forward = h11.Request(method=head.method, target=target, headers=headers)
        if len(self._forward_heads) >= 64:
            self._forward_heads.clear()
        self._forward_heads[id(head)] = (head, forward)  # keeping head keeps its id unique
        return forward

    async def _write_request(
        self,
        head: h11.Request,
        body: bytes | AsyncIterable[bytes] | None,
        write_timeout: float | None,
    ) -> None:
        wire = self._wire
        if body is None or isinstance(body, bytes):
            # One write for head and body: fewer syscalls, and one packet for small requests.
            await self._send(wire.request(head, body), write_timeout)
            self._request_sent = True
            return
        await self._send(wire.request_head(head), write_timeout)
        # Only the sends are timed: a body that is slow to produce its chunks is no write timeout.
        async for chunk in body:
            if chunk:  # an empty chunk would end a chunked body early
                await self._send(wire.request_body(bytes(chunk)), write_timeout)
        await self._send(wire.request_end(), write_timeout)
        self._request_sent = True

    async def _send(self, data: bytes, write_timeout: float | None) -> None:
        """Send ``data``; ``write_timeout`` bounds the time without progress, on every stream."""
        fast = self._fast_stream
        if fast is not None:
            fast.send_timeout = write_timeout  # the stream measures progress itself
            await fast.send(data)
            return
        # Pieces keep the count of bytes sent close to what the kernel took (see _delivered).
        for start in range(0, len(data), WRITE_PIECE_SIZE):
            piece = (
                data if len(data) <= WRITE_PIECE_SIZE else data[start : start + WRITE_PIECE_SIZE]
            )
            self._sending = True
            self._sends += 1
            try:
                if self._watchdog or write_timeout is None:
                    await self.stream.send(piece)
                else:
                    with anyio.fail_after(write_timeout):
                        await self.stream.send(piece)
            finally:
                self._sending = False
            self._sent += len(piece)

    async def _write_watching_for_answer(
        self,
        head: h11.Request,
        body: bytes | AsyncIterable[bytes] | None,
        write_timeout: float | None,
    ) -> None:
        """Write the request while a second task watches for the server's answer; a final
        response stops the write (the rest of the body is not sent). On anyio streams a third
        task measures write progress, since a large write blocks for as long as the peer takes
        to read it, however steadily it reads."""
        write_error: BaseException | None = None
        answered = False
        stalled = False

        async def watch() -> None:
            nonlocal answered
            answered = await self._watch_for_final_head()
            if answered:
                group.cancel_scope.cancel()

        async def watchdog(seconds: float) -> None:
            # A stall: one send waited a whole period while the peer acknowledged nothing.
            nonlocal stalled
            delivered, sends = self._delivered(), self._sends
            while True:
                await anyio.sleep(seconds)
                now = self._delivered()
                if self._sending and self._sends == sends and now <= delivered:
                    stalled = True
                    writing.cancel()
                    return
                delivered, sends = now, self._sends

        if self._fast_stream is not None:
            self._fast_stream.receive_timeout = None  # the writer's own timeout governs
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            with anyio.CancelScope() as writing:
                if self._fast_stream is None and write_timeout is not None:
                    self._watchdog = True
                    group.start_soon(watchdog, write_timeout)
                try:
                    await self._write_request(head, body, write_timeout)
                except Exception as exc:
                    write_error = exc  # raised below, outside the group: no ExceptionGroup
                finally:
                    self._watchdog = False
            group.cancel_scope.cancel()
        if answered:
            return
        if stalled:
            raise TimeoutError
        if write_error is not None:
            raise write_error

    def _delivered(self) -> int:
        """Bytes sent on an anyio stream that the peer has acknowledged (approximately)."""
        return self._sent - unsent_bytes(self._fd)

    async def _watch_for_final_head(self) -> bool:
        """Read what the server sends during the upload; True once a final response head (or
        an error, or the end of the stream) says the upload should stop."""
        try:
            while True:
                event = self._feed(await self._receive())
                while event is not NEED_DATA:
                    self._early.append(event)
                    if type(event) is not Head or event.status >= 200:
                        return True
                    event = self._buffered_event()
        except AgentError as exc:
            self._early.append(exc)
            return True

    # -- reading -------------------------------------------------------------------------------

    async def _read_final_head(self, timeouts: Timeouts) -> Head:
        headers_timeout = timeouts.headers
        deadline = None if headers_timeout is None else self.clock() + headers_timeout
        interim = 0
        while True:
            event = await self._next_event(timeouts.read, deadline, headers_timeout)
            if type(event) is not Head:
                raise self._protocol_error(f"expected a response head, got {event!r}")
            if event.status >= 200:
                return event
            interim += 1  # 100 Continue, 103 Early Hints
            if interim > MAX_INFORMATIONAL_RESPONSES:
                raise self._protocol_error(
                    f"more than {MAX_INFORMATIONAL_RESPONSES} interim (1xx) responses"
                )

    def _response_head(self, event: Head) -> ResponseHead:
        # The wire bounds a head still arriving; one that came whole in one read is checked here.
        if self._response_bytes > MAX_RESPONSE_HEAD_SIZE:  # else the head cannot be that large
            head_size = sum(len(name) + len(value) + 4 for name, value in event.headers)
            if head_size > MAX_RESPONSE_HEAD_SIZE:
                raise self._protocol_error(
                    f"response headers are larger than {MAX_RESPONSE_HEAD_SIZE} bytes"
                )
        return ResponseHead(
            status=event.status,
            reason=event.reason.decode("latin-1"),
            http_version=event.http_version.decode("ascii"),
            headers=event.headers,
        )

    async def _next_event(
        self,
        read_timeout: float | None,
        deadline: float | None = None,
        headers_timeout: float | None = None,
    ) -> Any:
        """The next h11 event. ``read_timeout`` bounds each silence; ``deadline`` (a clock
        time) bounds the whole wait, for the response head."""
        if self._early:
            early = self._early.pop(0)
            if isinstance(early, BaseException):
                raise early
            return early
        event = self._buffered_event()
        if event is not NEED_DATA:
            return event
        fast = self._fast_stream
        by_deadline = False  # whether the head's deadline, not read_timeout, bounds this wait
        try:
            while event is NEED_DATA:
                wait = read_timeout
                if deadline is not None:
                    left = deadline - self.clock()
                    if left <= 0:
                        raise self._headers_timeout(headers_timeout)
                    by_deadline = wait is None or left < wait
                    wait = left if by_deadline else wait
                if fast is not None:
                    fast.receive_timeout = wait
                    data = await self._receive()
                elif wait is None:
                    data = await self._receive()
                else:
                    with anyio.fail_after(wait):
                        data = await self._receive()
                event = self._feed(data)
        except TimeoutError:
            if by_deadline:
                raise self._headers_timeout(headers_timeout) from None
            raise ReadTimeout(
                f"{self.origin}: no response data within {read_timeout}s",
                origin=str(self.origin),
            ) from None
        return event

    def _headers_timeout(self, headers_timeout: float | None) -> ReadTimeout:
        return ReadTimeout(
            f"{self.origin}: the response head did not arrive within headers_timeout="
            f"{headers_timeout}s",
            origin=str(self.origin),
        )

    def _buffered_event(self) -> WireEvent:
        """The next event from what the wire already holds (``NEED_DATA`` when it needs more)."""
        try:
            return self._wire.next_event()
        except WireError as exc:
            raise self._protocol_error(str(exc)) from exc

    def _feed(self, data: bytes) -> Any:
        """Hand received bytes to h11 and return its next event."""
        if data:
            self.response_started = True
            self._response_bytes += len(data)
        elif not self.response_started:
            raise ConnectionLostBeforeResponse(
                f"{self.origin}: the server closed the connection without responding",
                origin=str(self.origin),
            )
        self._wire.receive_data(data)
        return self._buffered_event()

    async def _receive(self) -> bytes:
        try:
            return await self.stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            self._eof = True
            return b""
        except TimeoutError:
            raise  # our stream's receive timeout; an OSError subclass, but not a lost socket
        except _READ_ERRORS as exc:
            if not self.response_started:
                raise ConnectionLostBeforeResponse(
                    f"{self.origin}: connection lost before the response ({exc!r})",
                    origin=str(self.origin),
                ) from exc
            raise RemoteProtocolError(
                f"{self.origin}: connection lost while reading the response ({exc!r})",
                origin=str(self.origin),
            ) from exc

    async def _reset(self) -> None:
        """Close an anyio stream with a TCP reset: nothing buffered is flushed or waited for."""
        raw = stream_extra(self.stream, SocketAttribute.raw_socket)
        if raw is not None:
            with suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await anyio.aclose_forcefully(self.stream)

    def _protocol_error(self, detail: str) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"{self.origin}: malformed response: {detail}", origin=str(self.origin)
        )


def stream_extra(stream: ByteStream, attribute: Any) -> Any:
    """``stream.extra(attribute)``, or None when the stream lacks it or fails to say."""
    try:
        return stream.extra(attribute, None)
    except Exception:
        return None


def _poller_for(stream: ByteStream) -> select.poll | None:
    raw = stream_extra(stream, SocketAttribute.raw_socket)
    if not isinstance(raw, socket.socket) and not hasattr(raw, "fileno"):
        return None
    try:
        fd = raw.fileno()
    except OSError:
        return None
    if fd < 0:
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return poller


def _has_buffered_input(stream: object) -> bool:
    """Whether the event loop already read bytes (or EOF) off this socket into a buffer.

    On asyncio, anyio's socket stream reads eagerly into its protocol, so unsolicited bytes are
    no longer visible to ``poll``. There is no public API for this; look, and assume nothing
    when the attributes are absent.
    """
    while stream is not None:
        protocol = getattr(stream, "_protocol", None)
        if protocol is not None:
            return bool(getattr(protocol, "read_queue", None)) or bool(
                getattr(protocol, "is_at_eof", False) or getattr(protocol, "exception", None)
            )
        stream = getattr(stream, "transport_stream", None)
    return False
