"""Sockets to a server in this process, for ``MockAgent``: everything but the network is real.

Theory of operation. A ``MockAgent`` is an ``Agent`` whose connector opens a ``SimulatedSocket``
instead of dialing. The agent's own machinery runs over it unchanged: the pool opens a socket per
origin, reuses it, queues past ``max_sockets``; the same h11 client connection writes each request
and parses each response; timeouts, ``max_response_size`` and the counters behind ``stats()``
apply as in production.

The far end of a simulated socket is an h11 *server* connection, fed synchronously by the
client's writes. When a request head arrives, the server takes the ``Answer`` that the mock chose
for it. The mock chooses in ``dispatch``, before the pool picks a socket, and hands the choice
over in a context variable: the pool's socket work for a request runs in the task that
dispatches it (or in tasks it starts, which inherit the variable), so the answer reaches the
socket that request was given, whichever socket that is.

Answers: a canned ``Reply`` once the whole request has arrived, as most servers answer; a
``Failure`` raised where the response would have arrived (or where the socket would have been
opened, for connect errors); or an ASGI app (``AppAnswer``), run as a task of its own from the
request head onwards, streaming its response as it sends it. An app's last body message is held
until the app returns, as Starlette's ``TestClient`` does: a test sees the app's background
work done, and an exception the app raises reaches the caller in place of the end of the
response (Starlette answers 500 and then raises). What the server cannot keep alive
(``Connection: close`` either way, a response cut short) it closes after the response, as a
real server does, and the client sees the end of the stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.lowlevel
import h11
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute
from starlette.types import ASGIApp, Message

from ._errors import BlockedAddress, ConnectError, RemoteProtocolError
from ._eventloop import spawn_background
from ._urls import Origin

# An app's body waits for the client to read once this much of it is buffered.
HIGH_WATER = 64 * 1024
# Simulated sockets get distinct local ports, as real ones do, so apps can tell them apart.
_ports = itertools.count()
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Reply:
    """A canned response: sent once the whole request has arrived."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Failure:
    """An error raised to the caller instead of a response."""

    error: BaseException

    @property
    def before_connecting(self) -> bool:
        """A connect error, raised where the socket would be opened (when one is opened)."""
        return isinstance(self.error, ConnectError | BlockedAddress)


@dataclass(frozen=True, slots=True)
class AppAnswer:
    """An ASGI app that answers the request, in a task of its own."""

    app: ASGIApp


Answer = Reply | Failure | AppAnswer

_answer: ContextVar[Answer | None] = ContextVar("starlette_agent_simulated_answer", default=None)


@contextmanager
def answering(answer: Answer) -> Iterator[None]:
    """Within this block, requests this task sends on simulated sockets get ``answer``."""
    token = _answer.set(answer)
    try:
        yield
    finally:
        _answer.reset(token)


async def connect_simulated(origin: Origin) -> ByteStream:
    """The connector of a ``MockAgent``: a simulated socket to ``origin``."""
    answer = _answer.get()
    if isinstance(answer, Failure) and answer.before_connecting:
        raise answer.error
    return SimulatedSocket(origin)


class SimulatedTLS:
    """Stands for the TLS session of a simulated https socket: there is no handshake, and the
    agent, seeing one, does not attempt one."""

    def __repr__(self) -> str:
        return "<SimulatedTLS>"


@dataclass(eq=False)
class _Exchange:
    """One request on a simulated socket, as its server sees it."""

    head: h11.Request
    answer: Answer
    body: list[bytes] = field(default_factory=list)
    request_complete: bool = False
    body_delivered: bool = False  # the app was given the end of the request body
    status: int = 0  # of the response, once started
    response_started: bool = False
    final_body: bytes | None = None  # an app's last body message, sent once the app returns
    app_scope: anyio.CancelScope | None = None


class SimulatedSocket(ByteStream):
    """The client end of a socket whose server end is in this process."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.local_port = 40000 + next(_ports) % 20000
        self._server = h11.Connection(h11.SERVER)
        self._outgoing = bytearray()  # server to client, not yet received
        self._exchange: _Exchange | None = None
        self._failure: BaseException | None = None
        self._server_closed = False  # the client reads the end of the stream after _outgoing
        self._closed = False  # the client closed its end
        self._changed = anyio.Event()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes: dict[Any, Callable[[], Any]] = {
            SocketAttribute.local_address: lambda: ("127.0.0.1", self.local_port),
            SocketAttribute.remote_address: lambda: (self.origin.host, self.origin.port),
        }
        if self.origin.scheme == "https":
            attributes[TLSAttribute.ssl_object] = SimulatedTLS
        return attributes

    # -- the client's end ------------------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise anyio.ClosedResourceError
        if self._server_closed:
            raise anyio.BrokenResourceError
        self._server.receive_data(bytes(item))
        self._serve()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._outgoing:
                data = bytes(self._outgoing[:max_bytes])
                del self._outgoing[:max_bytes]
                self._notify()  # an app waiting for the client to read may go on
                return data
            if self._failure is not None:
                raise self._failure
            if self._server_closed:
                raise anyio.EndOfStream
            await self._wait()

    async def send_eof(self) -> None:
        self.close()  # the agent never half-closes a socket; treat it as hanging up

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Close both ends; an app still answering is cancelled, as by a client that hung up."""
        if self._closed:
            return
        self._closed = True
        if self._exchange is not None and self._exchange.app_scope is not None:
            self._exchange.app_scope.cancel()
        self._notify()

    # -- the server's end ------------------------------------------------------------------------

    def _serve(self) -> None:
        """Take in what the client sent: start, feed or complete the current exchange."""
        while not self._server_closed:
            try:
                event = self._server.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(RemoteProtocolError(f"{self.origin}: bad request: {exc}"))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if type(event) is h11.Request:
                self._start(event)
            elif type(event) is h11.Data and self._exchange is not None:
                self._exchange.body.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage and self._exchange is not None:
                self._exchange.request_complete = True
                if isinstance(self._exchange.answer, Reply):
                    self._reply(self._exchange, self._exchange.answer)
            elif type(event) is h11.ConnectionClosed:
                return
            self._notify()

    def _start(self, head: h11.Request) -> None:
        answer = _answer.get()
        if answer is None:
            answer = Failure(
                RemoteProtocolError(
                    f"{self.origin}: a simulated socket got a request that no MockAgent "
                    "dispatched; send it through the mock's dispatch()",
                    origin=str(self.origin),
                )
            )
        exchange = self._exchange = _Exchange(head, answer)
        if isinstance(answer, Failure):
            self._fail(answer.error)
        elif isinstance(answer, AppAnswer):
            self._start_app(exchange, answer.app)

    def _reply(self, exchange: _Exchange, reply: Reply) -> None:
        self._respond(exchange, reply.status, reply.headers)
        self._respond_body(exchange, reply.body, more=False)

    def _respond(
        self, exchange: _Exchange, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        self._write(h11.Response(status_code=status, headers=headers, reason=reason))
        exchange.status = status
        exchange.response_started = True

    def _respond_body(self, exchange: _Exchange, data: bytes, *, more: bool) -> None:
        no_body = exchange.head.method == b"HEAD" or exchange.status in _NO_BODY_STATUSES
        if data and not no_body:
            self._write(h11.Data(data=data))
        if not more:
            self._write(h11.EndOfMessage())
            self._finish()

    def _write(self, event: Any) -> None:
        data = self._server.send(event)
        if data:
            self._outgoing += data
        self._notify()

    def _finish(self) -> None:
        server = self._server
        if server.our_state is h11.DONE and server.their_state is h11.DONE:
            server.start_next_cycle()
            self._exchange = None
            self._serve()  # a request the client sent meanwhile
        else:
            # Connection: close on either side, or a request body not all read: the server
            # hangs up after its response.
            self._server_closed = True
        self._notify()

    def _fail(self, error: BaseException) -> None:
        """The client gets ``error`` after the bytes already sent; the socket is done."""
        self._failure = error
        self._server_closed = True
        self._notify()

    # -- an ASGI app answering -------------------------------------------------------------------

    def _start_app(self, exchange: _Exchange, app: ASGIApp) -> None:
        scope = self._asgi_scope(exchange.head)
        cancel = exchange.app_scope = anyio.CancelScope()

        async def receive() -> Message:
            while not exchange.body_delivered:
                if exchange.body or exchange.request_complete:
                    chunk = b"".join(exchange.body)
                    exchange.body.clear()
                    exchange.body_delivered = exchange.request_complete
                    more = not exchange.body_delivered
                    return {"type": "http.request", "body": chunk, "more_body": more}
                await self._wait()
            while exchange.final_body is None and not self._closed:
                await self._wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if self._closed:
                raise OSError(f"the client closed its connection to {self.origin}")
            kind = message["type"]
            try:
                if kind == "http.response.start":
                    headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
                    self._respond(exchange, message["status"], headers)
                elif kind == "http.response.body" and exchange.response_started:
                    body = message.get("body", b"")
                    if message.get("more_body", False):
                        self._respond_body(exchange, body, more=True)
                    else:
                        exchange.final_body = body
                        self._notify()
            except h11.LocalProtocolError as exc:
                raise RemoteProtocolError(
                    f"{self.origin}: the app sent an invalid response: {exc}",
                    origin=str(self.origin),
                ) from exc
            if kind == "http.response.body":
                while len(self._outgoing) > HIGH_WATER and not self._closed:
                    await self._wait()

        async def run() -> None:
            _answer.set(None)  # requests the app sends are answered by their own dispatch
            with cancel:
                try:
                    await app(scope, receive, send)
                except Exception as exc:
                    if not self._closed:
                        self._fail(exc)  # the caller sees the app's own error, as TestClient does
                    return
                if self._closed:
                    return
                if not exchange.response_started:
                    self._reply(exchange, Reply(500, [(b"content-length", b"0")], b""))
                elif exchange.final_body is not None:
                    self._respond_body(exchange, exchange.final_body, more=False)
                else:
                    self._fail(
                        RemoteProtocolError(
                            f"{self.origin}: the app returned without finishing its response",
                            origin=str(self.origin),
                        )
                    )

        spawn_background(run)

    def _asgi_scope(self, head: h11.Request) -> dict[str, Any]:
        path, _, query = head.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": head.http_version.decode("ascii"),
            "method": head.method.decode("ascii"),
            "scheme": self.origin.scheme,
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(head.headers),
            "server": (self.origin.host, self.origin.port),
            "client": ("127.0.0.1", self.local_port),
            "state": {},
        }

    # -- waking whoever waits --------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()

    async def _wait(self) -> None:
        """Wait until something changes: bytes sent either way, an exchange ending, a close."""
        changed = self._changed
        if changed.is_set():
            changed = self._changed = anyio.Event()
        await changed.wait()
