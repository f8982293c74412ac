"""One socket to one origin, and the h11 state machine that speaks HTTP/1.1 over it.

A ``Connection`` sends one request at a time and reads its response. It never decides whether it
is pooled: it reports whether the exchange left it reusable, and the Agent and its ``Pool`` do
the rest. Low-level errors are translated here, at the boundary, into ``AgentError``s that name
the origin.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
from collections.abc import AsyncIterable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import h11
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from . import _asyncio_stream as asyncio_stream
from ._asyncio_stream import AsyncioByteStream
from ._errors import (
    AgentError,
    ConnectError,
    ConnectTimeout,
    InvalidRequest,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
)
from ._eventloop import current_clock, in_trio
from ._options import Connector
from ._urls import Origin

RECEIVE_SIZE = 65536
# Response heads larger than this are refused (h11 raises when an event outgrows its buffer).
MAX_RESPONSE_HEAD_SIZE = 64 * 1024
# Closing a socket must not hang a shutdown on a peer that never reads our TLS close_notify.
CLOSE_TIMEOUT = 1.0

_READ_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of a request; None means no limit."""

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    @classmethod
    def all(cls, seconds: float) -> Timeouts:
        return cls(seconds, seconds, seconds, seconds)


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

    def __init__(self, pool_key: str, origin: Origin, stream: ByteStream) -> None:
        self.pool_key = pool_key
        self.origin = origin
        self.stream = stream
        self.idle_deadline = math.inf
        self.requests_started = 0
        self.closed = False
        self.response_started = False  # any byte of the current response arrived
        self._response_bytes = 0  # bytes received for the current response so far
        self._eof = False
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD_SIZE)
        #: Our asyncio stream applies timeouts itself, with a timer instead of a cancel scope.
        self._fast_stream = stream if type(stream) is AsyncioByteStream else None
        self._poller = None if self._fast_stream is not None else _poller_for(stream)
        # The event loop's clock, as anyio's deadlines use it; looked up once, not per request.
        self.clock: Callable[[], float] = current_clock()
        sockname = _extra(stream, SocketAttribute.local_address)
        self.local_port: int | None = sockname[1] if isinstance(sockname, tuple) else None

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._h11.our_state.__name__
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
        """Send the request and read until the response head; the body is read separately."""
        self.requests_started += 1
        self.response_started = False
        self._response_bytes = len(self._h11.trailing_data[0])
        write_error: AgentError | None = None
        try:
            if self._fast_stream is not None:
                self._fast_stream.send_timeout = timeouts.write
                await self._write_request(head, body)
            else:
                with anyio.fail_after(timeouts.write):
                    await self._write_request(head, body)
        except TimeoutError:
            raise WriteTimeout(
                f"{self.origin}: could not send the request within {timeouts.write}s",
                origin=str(self.origin),
            ) from None
        except h11.LocalProtocolError as exc:
            # e.g. a streamed body longer or shorter than its declared Content-Length
            raise InvalidRequest(f"{self.origin}: {exc}", origin=str(self.origin)) from exc
        except (*_READ_ERRORS, anyio.EndOfStream) as exc:
            # The server may have answered early (413, 401) and closed: read that answer.
            write_error = ConnectionLostBeforeResponse(
                f"{self.origin}: connection lost while sending the request ({exc!r})",
                origin=str(self.origin),
            )
            write_error.__cause__ = exc
        try:
            event = await self._next_event(timeouts.read)
            while type(event) is h11.InformationalResponse:  # 100 Continue, 103 Early Hints
                event = await self._next_event(timeouts.read)
        except ConnectionLostBeforeResponse:
            if write_error is not None:
                raise write_error from write_error.__cause__
            raise
        if type(event) is not h11.Response:
            raise self._protocol_error(f"expected a response head, got {event!r}")
        # h11 bounds only a head still arriving; one that came whole in one read is checked here.
        if self._response_bytes > MAX_RESPONSE_HEAD_SIZE:  # else the head cannot be that large
            head_size = sum(len(name) + len(value) + 4 for name, value in event.headers)
            if head_size > MAX_RESPONSE_HEAD_SIZE:
                raise self._protocol_error(
                    f"response headers are larger than {MAX_RESPONSE_HEAD_SIZE} bytes"
                )
        return ResponseHead(
            status=event.status_code,
            reason=event.reason.decode("latin-1"),
            http_version=event.http_version.decode("ascii"),
            headers=list(event.headers),
        )

    async def receive_body_chunk(self, read_timeout: float | None) -> bytes | None:
        """The next piece of the response body, or None at its end."""
        event = await self._next_event(read_timeout)
        if type(event) is h11.Data:
            return bytes(event.data)
        if type(event) is h11.EndOfMessage:
            return None
        raise self._protocol_error(f"expected response body, got {event!r}")

    def finish_cycle(self) -> bool:
        """After the response ended: True if the socket can carry another request."""
        # h11 ends a close-delimited body at EOF in state DONE, but that socket is finished.
        if self._eof:
            return False
        # Bytes after the end of the response would be read as the next response: never reuse.
        if self._h11.trailing_data[0]:
            return False
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False

    async def aclose(self) -> None:
        """Close the socket. Shielded: a cancelled caller must not leave it open."""
        if self.closed:
            return
        self.closed = True
        self._poller = None
        # The socket is being thrown away; a failing close only means it was already broken,
        # and raising here would hide the error that made us close it.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(CLOSE_TIMEOUT),
            suppress(Exception),
        ):
            await self.stream.aclose()

    # -- internals -----------------------------------------------------------------------------

    async def _write_request(
        self, head: h11.Request, body: bytes | AsyncIterable[bytes] | None
    ) -> None:
        conn = self._h11
        data = conn.send(head) or b""
        if body is None or isinstance(body, bytes):
            # One write for head and body: fewer syscalls, and one packet for small requests.
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            await self.stream.send(data)
            return
        await self.stream.send(data)
        async for chunk in body:
            if chunk:  # an empty chunk would end a chunked body early
                await self.stream.send(conn.send(h11.Data(data=bytes(chunk))) or b"")
        await self.stream.send(conn.send(h11.EndOfMessage()) or b"")

    async def _next_event(self, read_timeout: float | None) -> Any:
        conn = self._h11
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise self._protocol_error(str(exc)) from exc
        if event is not h11.NEED_DATA:
            return event
        # The read timeout bounds silence, not the length of the whole response: our asyncio
        # stream applies it to each receive; for other streams one cancel scope has its
        # deadline pushed back whenever bytes arrive.
        fast = self._fast_stream
        try:
            if fast is not None:
                fast.receive_timeout = read_timeout
                while event is h11.NEED_DATA:
                    event = self._feed(await self._receive())
            else:
                with anyio.fail_after(read_timeout) as scope:
                    while event is h11.NEED_DATA:
                        if read_timeout is not None:
                            scope.deadline = self.clock() + read_timeout
                        event = self._feed(await self._receive())
        except TimeoutError:
            raise ReadTimeout(
                f"{self.origin}: no response data within {read_timeout}s",
                origin=str(self.origin),
            ) from None
        return event

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
        self._h11.receive_data(data)
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise self._protocol_error(str(exc)) from exc

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

    def _protocol_error(self, detail: str) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"{self.origin}: malformed response: {detail}", origin=str(self.origin)
        )


async def open_connection(
    pool_key: str,
    origin: Origin,
    *,
    ssl_context: ssl.SSLContext | None,
    connector: Connector | None,
    local_address: str | None,
    connect_timeout: float | None,
) -> Connection:
    """Open a socket to ``origin`` (TCP, then TLS for https) within ``connect_timeout``."""
    with anyio.CancelScope() as scope:
        if connect_timeout is not None:
            scope.deadline = anyio.current_time() + connect_timeout
        # On asyncio, our own transport-based stream (see _asyncio_stream: it is much cheaper per
        # request); the TLS handshake then happens inside create_connection.
        with _connect_errors(origin):
            if connector is not None:
                stream: ByteStream = await connector(origin)
            elif not in_trio():
                stream = await asyncio_stream.connect(
                    origin.host,
                    origin.port,
                    ssl_context=ssl_context if origin.scheme == "https" else None,
                    local_address=local_address,
                    close_timeout=CLOSE_TIMEOUT,
                )
            else:
                stream = await anyio.connect_tcp(origin.host, origin.port, local_host=local_address)
        if origin.scheme == "https" and _extra(stream, TLSAttribute.ssl_object) is None:
            assert ssl_context is not None
            try:
                with _connect_errors(origin, "TLS handshake with"):
                    stream = await TLSStream.wrap(
                        stream,
                        hostname=origin.host,
                        ssl_context=ssl_context,
                        # HTTP frames its own messages, so a missing close_notify cannot cut a
                        # body short unnoticed except in close-delimited responses.
                        standard_compatible=False,
                    )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                raise
        return Connection(pool_key, origin, stream)
    raise ConnectTimeout(
        f"could not connect to {origin} within {connect_timeout}s", origin=str(origin)
    )


@contextmanager
def _connect_errors(origin: Origin, what: str = "cannot connect to") -> Iterator[None]:
    try:
        yield
    except AgentError:
        raise
    except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        raise ConnectError(f"{what} {origin}: {exc!r}", origin=str(origin)) from exc
    except Exception as exc:
        # A user-supplied connector failed in its own way; keep it as the cause.
        raise ConnectError(
            f"{what} {origin}: connector failed: {exc!r}", origin=str(origin)
        ) from exc


def _extra(stream: ByteStream, attribute: Any) -> Any:
    try:
        return stream.extra(attribute, None)
    except Exception:
        return None


def _poller_for(stream: ByteStream) -> select.poll | None:
    raw = _extra(stream, SocketAttribute.raw_socket)
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
