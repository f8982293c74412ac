"""The fault catalogue: every way an upstream can misbehave that the agent must survive, as data.

Each ``Fault`` names a server's misbehaviour, the server that commits it, the request the caller
sends, and what the caller must get: an ``Answer`` (status and exact body) or a ``Raises`` (the
exact ``AgentError`` subclass and a pattern its message matches). ``tests/test_agent_faults.py``
runs each one and then checks the agent is whole (nothing active or queued, no socket in doubt
kept idle) and still works, against a healthy route of the same server.

Every server here answers ``GET /ok`` with ``ok``, whatever its fault: the fault is committed on
``/fault`` only (or, for faults of the connection itself, on every connection). Two kinds:

* raw faults run on ``RawServer`` (an anyio server): ``handler`` is its connection handler;
* socket faults need a peer that truly stops reading, so they run on a ``SocketServer`` (blocking
  sockets): ``socket_handler`` is its connection handler.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import SocketAttribute
from servers import (
    RawConnection,
    RawHandler,
    RawRequest,
    peer_left,
    read_head,
    response_bytes,
)

from starlette_agent import AgentError, ReadTimeout, RemoteProtocolError, WriteTimeout

OK = response_bytes(b"ok")
SocketHandler = Callable[[socket.socket], None]
# What a raw fault does with a request to /fault; True closes the connection afterwards.
Respond = Callable[[RawConnection, RawRequest], Awaitable[bool | None]]


@dataclass(frozen=True)
class Answer:
    """The caller gets this response, body complete."""

    status: int
    body: bytes


@dataclass(frozen=True)
class Raises:
    """The caller gets exactly this error (not a subclass), its message matching ``match``."""

    error: type[AgentError]
    match: str


@dataclass(frozen=True)
class Fault:
    name: str
    expect: Answer | Raises
    handler: RawHandler | None = None
    socket_handler: SocketHandler | None = None
    method: str = "GET"
    content: bytes | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # the Agent's, for this fault
    warm_up: int = 0  # GET /fault answered "ok" on one kept-alive socket, before the fault
    pause: float = 0.0  # seconds between the warm-up and the request
    kept_idle: int = 0  # sockets the pool may hold idle right after (0: the one in doubt went)
    retries: int = 0  # the agent's retries of the request on a fresh socket

    def __str__(self) -> str:
        return self.name


# --------------------------------------------------------------------------- raw server moves


async def reset(conn: RawConnection) -> None:
    """Close with a TCP reset (RST): SO_LINGER 0, then close."""
    raw = conn.stream.extra(SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await conn.stream.aclose()


def routed(respond: Respond) -> RawHandler:
    """A connection handler: ``respond`` commits the fault on /fault; /ok is answered ``ok``."""

    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target != "/fault":
                await conn.send(OK)
            elif await respond(conn, request):
                return

    return handler


def sends(data: bytes, *, then_reset: bool = False) -> RawHandler:
    """/fault gets ``data``; then the server resets, or keeps the socket until the client goes
    (so that the client's error comes from what it read, not from the connection ending)."""

    async def respond(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(data)
        if then_reset:
            await anyio.sleep(0.05)  # the client reads what was sent before the reset
            await reset(conn)
        else:
            await conn.wait_closed()
        return True

    return routed(respond)


def closes(*, then_reset: bool) -> RawHandler:
    """/fault is read and not answered: the connection is closed (FIN) or reset."""

    async def respond(conn: RawConnection, request: RawRequest) -> bool:
        if then_reset:
            await reset(conn)
        return True

    return routed(respond)


def trickles(data: bytes, *, piece: int, interval: float) -> RawHandler:
    """/fault gets ``data`` ``piece`` bytes every ``interval`` seconds."""

    async def respond(conn: RawConnection, request: RawRequest) -> bool:
        for start in range(0, len(data), piece):
            await conn.send(data[start : start + piece])
            await anyio.sleep(interval)
        await conn.wait_closed()
        return True

    return routed(respond)


async def _endless_1xx(conn: RawConnection, request: RawRequest) -> bool:
    while True:
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await anyio.sleep(0.001)


def closes_when_idle(
    after: float, *, then_reset: bool = False, answer: Callable[[RawRequest], bytes] | None = None
) -> RawHandler:
    """Every request is answered (``ok``, or ``answer(request)``); a connection idle for ``after``
    seconds is closed (FIN, or a reset), without a word beforehand: no ``Connection: close``, no
    ``Keep-Alive`` hint. A request arriving as the server gives up races the close, as with any
    real server."""

    async def handler(conn: RawConnection) -> None:
        while await next_request_within(conn, after):
            request = await conn.read_request()
            if request is None:
                return
            await conn.send(OK if answer is None else answer(request))
        if then_reset:
            await reset(conn)

    return handler


async def next_request_within(conn: RawConnection, seconds: float) -> bool:
    """Whether the next request's first bytes arrive within ``seconds`` (or are already here)."""
    if conn.pending:
        return True
    with anyio.move_on_after(seconds):
        return await conn.wait_readable()
    return False


def closes_after(requests: int, *, on_next: bool) -> RawHandler:
    """Each connection answers ``requests`` requests with ``ok`` and keep-alive, saying nothing
    of a limit; then it closes at once (``on_next=False``), or reads the next request and closes
    without a byte of answer (``on_next=True``: the request was sent on a socket about to die)."""

    async def handler(conn: RawConnection) -> None:
        while conn.requests < requests:
            if await conn.read_request() is None:
                return
            await conn.send(OK)
        if on_next:
            await conn.read_request()

    return handler


def unsolicited_when_idle(data: bytes, after: float) -> RawHandler:
    """Requests are answered ``ok``; a connection idle for ``after`` seconds gets ``data`` unasked
    (and is then served as before)."""

    async def handler(conn: RawConnection) -> None:
        while True:
            if not await next_request_within(conn, after):
                await conn.send(data)
            request = await conn.read_request()
            if request is None:
                return
            await conn.send(OK)

    return handler


# --------------------------------------------------------------------------- socket server moves


class ClientStayed(AssertionError):
    """The client kept a connection open that it should have closed."""


def wait_for_peer_to_leave(conn: socket.socket, timeout: float = 10.0) -> None:
    """Block until the client closes or resets the connection, reading nothing meanwhile: a
    peer that truly stops reading, yet notices when it is left. Raises ``ClientStayed`` (the
    ``SocketServer`` records it) when the client is still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not peer_left(conn):
        if time.monotonic() > deadline:
            raise ClientStayed(f"the client kept the connection open for {timeout}s")
        time.sleep(0.01)


def socket_routed(fault: Callable[[socket.socket, bytes], None]) -> SocketHandler:
    """A ``SocketServer`` handler: GET /ok is answered ``ok``; anything else goes to ``fault``."""

    def handler(conn: socket.socket) -> None:
        while head := read_head(conn):
            if head.startswith(b"GET /ok "):
                conn.sendall(OK)
                continue
            fault(conn, head)
            return

    return handler


def _answers_413_and_stops_reading(conn: socket.socket, head: bytes) -> None:
    conn.sendall(response_bytes(b"too big", status=413, reason="Content Too Large"))
    wait_for_peer_to_leave(conn)


def _never_reads(conn: socket.socket, head: bytes) -> None:
    wait_for_peer_to_leave(conn)


# --------------------------------------------------------------------------- the catalogue

PARTIAL_HEAD = b"HTTP/1.1 200 OK\r\nContent-Le"
HALF_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
BIG_HEADER = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok"
TRICKLED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\nok"
STALE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
LOST = "connection lost|closed the connection"
BIG_UPLOAD = 32 * 1024 * 1024

FAULTS: tuple[Fault, ...] = (
    # -- the connection ends under the request
    Fault(
        "close before the head",
        handler=closes(then_reset=False),
        expect=Raises(RemoteProtocolError, "closed the connection without responding"),
    ),
    Fault(
        "reset before the head",
        handler=closes(then_reset=True),
        expect=Raises(RemoteProtocolError, LOST),
    ),
    Fault(
        "reset during the head",
        handler=sends(PARTIAL_HEAD, then_reset=True),
        expect=Raises(RemoteProtocolError, "connection lost while reading the response"),
    ),
    Fault(
        "reset mid-body",
        handler=sends(HALF_BODY, then_reset=True),
        expect=Raises(RemoteProtocolError, "connection lost while reading the response"),
    ),
    Fault(
        "short body (Content-Length: 100, 10 bytes, close)",
        handler=routed(lambda conn, request: _send_and_close(conn, HALF_BODY)),
        expect=Raises(RemoteProtocolError, "without sending complete message body"),
    ),
    # -- the server ends a kept-alive socket unannounced: the next request must succeed
    Fault(
        "close on idle (FIN)",
        handler=closes_when_idle(0.1),
        warm_up=1,
        pause=0.3,
        expect=Answer(200, b"ok"),
        kept_idle=1,
    ),
    Fault(
        "reset on idle (RST)",
        handler=closes_when_idle(0.1, then_reset=True),
        warm_up=1,
        pause=0.3,
        expect=Answer(200, b"ok"),
        kept_idle=1,
    ),
    Fault(
        "close after 3 requests, unannounced",
        handler=closes_after(3, on_next=False),
        warm_up=3,
        pause=0.05,  # the FIN is in: found closed before reuse, not raced
        expect=Answer(200, b"ok"),
        kept_idle=1,
    ),
    Fault(
        "close on the 4th request, unanswered: GET retried",
        handler=closes_after(3, on_next=True),
        warm_up=3,
        expect=Answer(200, b"ok"),
        kept_idle=1,
        retries=1,
    ),
    Fault(
        "close on the 4th request, unanswered: POST not retried",
        handler=closes_after(3, on_next=True),
        warm_up=3,
        method="POST",
        content=b"payload",
        expect=Raises(RemoteProtocolError, "reused socket .* POST is not idempotent"),
    ),
    # -- the head is malformed, too large, too slow or never final
    Fault(
        "garbage status line",
        handler=sends(b"HELLO THERE\r\n\r\n"),
        expect=Raises(RemoteProtocolError, "malformed response"),
    ),
    Fault(
        "oversized head (70 KB) in one write",
        handler=sends(BIG_HEADER),
        expect=Raises(RemoteProtocolError, "malformed response"),
    ),
    Fault(
        "oversized head (70 KB) trickled",
        handler=trickles(BIG_HEADER, piece=2048, interval=0.001),
        expect=Raises(RemoteProtocolError, "malformed response"),
    ),
    Fault(
        "trickled head (a byte every 50 ms)",
        handler=trickles(TRICKLED_HEAD, piece=1, interval=0.05),
        options={"headers_timeout": 0.3, "read_timeout": 2},
        expect=Raises(ReadTimeout, r"headers_timeout=0\.3s"),
    ),
    Fault(
        "endless 1xx",
        handler=routed(_endless_1xx),
        options={"headers_timeout": None},
        expect=Raises(RemoteProtocolError, "more than 16 interim"),
    ),
    # -- the body's framing is broken or ambiguous
    Fault(
        "bad chunk size",
        handler=sends(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        ),
        expect=Raises(RemoteProtocolError, "malformed response"),
    ),
    Fault(
        "two different Content-Length values",
        handler=sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
        expect=Raises(RemoteProtocolError, "malformed response"),
    ),
    Fault(
        "Content-Length with Transfer-Encoding",
        handler=routed(
            lambda conn, request: conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nok\r\n0\r\n\r\n"
            )
        ),
        # RFC 9112 6.1: "ought to be handled as an error" (a sign of smuggling), as llhttp does.
        expect=Raises(RemoteProtocolError, "Transfer-Encoding.*Content-Length"),
    ),
    # -- bytes nobody asked for
    Fault(
        "unsolicited bytes after a response",
        handler=routed(lambda conn, request: conn.send(OK + STALE)),
        expect=Answer(200, b"ok"),
    ),
    Fault(
        "unsolicited bytes on an idle socket",
        handler=unsolicited_when_idle(STALE, after=0.05),
        warm_up=1,
        pause=0.3,
        expect=Answer(200, b"ok"),  # never "stale": that answer belonged to no request
        kept_idle=1,
    ),
    # -- uploads to a server that stops reading
    Fault(
        "early 413 during an upload, the server reads no more",
        socket_handler=socket_routed(_answers_413_and_stops_reading),
        method="POST",
        content=b"x" * BIG_UPLOAD,
        options={"write_timeout": 2},
        expect=Answer(413, b"too big"),
    ),
    Fault(
        "server never reads the upload",
        socket_handler=socket_routed(_never_reads),
        method="POST",
        content=b"x" * BIG_UPLOAD,
        options={"write_timeout": 0.3},
        expect=Raises(WriteTimeout, r"no progress for 0\.3s"),
    ),
)


async def _send_and_close(conn: RawConnection, data: bytes) -> bool:
    await conn.send(data)
    return True
